"""Flower's deployment runtime and the classroom: real processes on 127.0.0.1, and the server's rules.

Two kinds of test:

* the strategy's rules (who is left out, what is reported, divergence) with a hand-written in-memory
  grid that delivers each message to a node's ClientApp at once, or never (a silent node); fast;
* real processes: a SuperLink and SuperNodes started by ``LocalFederation`` (free ports, bounded
  waits, every process stopped; logs kept on failure), ``flwr run``, TLS with node authentication,
  and the classroom's ``serve``/``join`` commands.

References are ``fl.fedavg`` in process (itself tested against hand-written loops elsewhere) and
hand-written FedAvg steps here.
"""

from __future__ import annotations

import importlib.util
import itertools
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fl_helpers as fl
from tests.optional import require

HAS_FLOWER = importlib.util.find_spec("flwr") is not None


@pytest.fixture(autouse=True)
def _needs_flower():
    require(HAS_FLOWER, "Flower is not installed (pip install -e '.[dev]')", what="the Flower tests")


def make_parties(seed=0, n=4):
    rng = np.random.default_rng(seed)
    return [fl.Party(rng.normal(size=(20 + 7 * i, 3)), rng.normal(size=20 + 7 * i), name=f"p{i}") for i in range(n)]


# --------------------------------------------------------------------------- an in-memory grid

class LoopbackGrid:
    """Delivers each message to its node's ClientApp at once; nodes in ``silent`` never answer.

    ``silent_from`` maps a node ID to the first server round (config ``server-round``) from which it
    stops answering (a student who leaves mid-run); QUERY messages carry no round (round 0).
    """

    def __init__(self, nodes, *, silent_from=None):
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1   # what a ServerApp process sets
        self.nodes = nodes                   # node_id -> (client_app, node_config)
        self.silent_from = silent_from or {}
        self.replies = {}
        self.ids = itertools.count()

    def get_node_ids(self):
        return list(self.nodes)

    def push_messages(self, messages):
        from flwr.app import Context, RecordDict

        out = []
        for msg in messages:
            mid = f"m{next(self.ids)}"
            msg.metadata.__dict__["_message_id"] = mid
            node = msg.metadata.dst_node_id
            t = int(msg.content["config"].get("server-round", 0))
            if t >= self.silent_from.get(node, np.inf):
                out.append(mid)
                continue
            app, node_config = self.nodes[node]
            ctx = Context(run_id=1, node_id=node, node_config=node_config, state=RecordDict(), run_config={})
            try:
                self.replies[mid] = app(msg, ctx)
            except Exception as exc:                 # as Flower does: the node replies with an error
                from flwr.app import Error, Message

                self.replies[mid] = Message(error=Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)
            out.append(mid)
        return out

    def pull_messages(self, ids):
        return [self.replies.pop(i) for i in list(ids) if i in self.replies]


def strategy(**kw):
    from fl_helpers.interop import flower

    return flower.strategy_class()(**kw)


def test_the_strategy_on_a_loopback_grid_equals_fedavg():
    from fl_helpers.interop import flower

    parties = make_parties()
    app = flower.client_app(parties)
    grid = LoopbackGrid({100 + i: (app, {"partition-id": i}) for i in range(4)})
    s = strategy(n_parties=4, lr=0.05, local_epochs=2, batch_size=8, fraction=0.5, seed=11)
    s.run(grid, np.zeros(4), rounds=3, timeout=5)
    h = s.recorder.history(engine="loopback", device="cpu")
    ref = fl.fedavg(parties, lr=0.05, rounds=3, local_epochs=2, batch_size=8, fraction=0.5, seed=11)
    np.testing.assert_allclose(h.thetas, ref.thetas, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h.party_losses, ref.party_losses, rtol=1e-12, atol=1e-14)
    assert [x.tolist() for x in h.selected] == [x.tolist() for x in ref.selected]
    assert all(len(x) == 2 for x in h.selected) and len({tuple(x) for x in h.selected}) > 1


def test_a_diverging_run_is_reported_as_fl_fedavg_reports_it():
    from fl_helpers.interop import flower

    parties = make_parties(n=5)
    grid = LoopbackGrid({i: (flower.client_app(parties), {"partition-id": i}) for i in range(5)})
    s = strategy(n_parties=5, lr=3.0, seed=0)
    s.run(grid, np.zeros(4), rounds=9, timeout=5)
    h = s.recorder.history(engine="loopback", device="cpu")
    ref = fl.fedavg(parties, lr=3.0, rounds=9)
    assert ref.diverged and h.diverged_at == ref.diverged_at and h.diverged_reason == ref.diverged_reason
    np.testing.assert_allclose(h.thetas, ref.thetas, rtol=1e-12)
    assert np.all(np.isfinite(h.losses)) and h.message.startswith(f"diverged at round {ref.diverged_at}")
    assert any(f"diverged at round {ref.diverged_at}" in e for e in s.events)


def test_a_model_that_overflows_ends_the_run_as_fl_fedavg_ends_it():
    from fl_helpers.interop import flower

    parties = make_parties(n=3)
    grid = LoopbackGrid({i: (flower.client_app(parties), {"partition-id": i}) for i in range(3)})
    s = strategy(n_parties=3, lr=1e300, seed=0)
    s.run(grid, np.zeros(4), rounds=5, timeout=5)         # no node is sent a non-finite model
    h = s.recorder.history(engine="loopback", device="cpu")
    ref = fl.fedavg(parties, lr=1e300, rounds=5)
    assert h.diverged_at == ref.diverged_at == 1 and h.diverged_reason == ref.diverged_reason
    assert h.rounds == 0 and not any("failed" in e for e in s.events)


def test_two_students_with_files_of_the_same_name_are_two_parties(tmp_path):
    from fl_helpers.interop import classroom as C
    from fl_helpers.interop import flower

    paths = []
    for k, rows in enumerate((slice(0, 9), slice(9, 20))):
        X, y, _ = fl.load_dataset("diabetes")
        (tmp_path / str(k)).mkdir()
        paths.append(tmp_path / str(k) / "mine.csv")
        np.savetxt(paths[-1], np.c_[X[rows], y[rows]], delimiter=",", header=",".join(C.COLUMNS), comments="")
    app = flower.client_app(None)
    grid = LoopbackGrid({1: (app, {"csv": str(paths[0])}), 2: (app, {"csv": str(paths[1])})})
    s = strategy(lr=0.1, seed=0, mode="classroom", min_nodes=2)
    s.run(grid, None, rounds=1, timeout=1)
    assert len(s.labels) == 2 and s.labels[0] != s.labels[1] and not s.events


def test_fixed_mode_stops_with_the_silent_party_named():
    from fl_helpers.interop import flower

    parties = make_parties(n=3)
    app = flower.client_app(parties)
    grid = LoopbackGrid({i: (app, {"partition-id": i}) for i in range(3)}, silent_from={2: 2})
    s = strategy(n_parties=3, lr=0.05, seed=0)
    with pytest.raises(RuntimeError, match=r"round 2: no usable reply from party 2 within 0.2 s"):
        s.run(grid, np.zeros(4), rounds=3, timeout=0.2)
    assert len(s.recorder.losses) == 2                     # rounds 0 and 1, nothing after


def classroom_nodes(tmp_path):
    """Three students: partitions 0 and 3 of the classroom task, and one with her own CSV."""
    from fl_helpers.interop import classroom as C

    raw = np.r_[C.party(5).data[0][:9] * C.STDS[:-1] + C.MEANS[:-1]]
    target = C.party(5).data[1][:9] * C.STDS[-1] + C.MEANS[-1]
    path = tmp_path / "mine.csv"
    np.savetxt(path, np.c_[raw, target], delimiter=",", header=",".join(C.COLUMNS), comments="")
    return {11: {"classroom-party": 3}, 12: {"csv": str(path)}, 13: {"classroom-party": 0}}, path


def test_classroom_a_student_who_leaves_is_left_out_and_the_round_says_so(tmp_path):
    from fl_helpers.interop import classroom as C
    from fl_helpers.interop import flower

    configs, csv_path = classroom_nodes(tmp_path)
    app = flower.client_app(None)
    grid = LoopbackGrid({n: (app, c) for n, c in configs.items()}, silent_from={11: 2})   # party 3 leaves in round 2
    s = strategy(lr=0.1, seed=0, mode="classroom", status=str(tmp_path / "status.json"), min_nodes=3)
    s.run(grid, None, rounds=3, timeout=0.2)
    h = s.recorder.history(engine="loopback", device="cpu")
    assert [label.split("#")[0] for label in s.labels] == ["party 0", "party 3", "csv mine.csv"]   # by label, CSV last
    assert [x.tolist() for x in h.selected] == [[0, 1, 2], [0, 2], [0, 2]]
    assert any("round 2: no usable reply from party 3 within 0.2 s; the round uses the 2 of 3 parties that answered"
               in e for e in s.events)
    # the reference: FedAvg steps written out, from the round-1 model, over the two who stayed
    p0, p3, mine = C.party(0), C.party(3), C.party_from_csv(csv_path)
    theta = fl.fedavg([p0, p3, mine], lr=0.1, rounds=1, seed=0).thetas[1]
    np.testing.assert_allclose(h.thetas[1], theta, rtol=1e-12)
    for t in (2, 3):
        grads = [p.gradient(theta) for p in (p0, mine)]
        theta = theta - 0.1 * (p0.n_samples * grads[0] + mine.n_samples * grads[1]) / (p0.n_samples + mine.n_samples)
        np.testing.assert_allclose(h.thetas[t], theta, rtol=1e-12)
    # the global loss averages whoever answered: round 2 and 3 without party 3
    assert np.isnan(h.party_losses[2][1]) and np.all(np.isfinite(h.losses))
    m0, m1 = p0.n_samples, mine.n_samples
    expect = (m0 * p0.loss(h.thetas[3]) + m1 * mine.loss(h.thetas[3])) / (m0 + m1)
    assert h.losses[3] == pytest.approx(expect, rel=1e-12)
    import json

    state = json.loads((tmp_path / "status.json").read_text())
    assert state["phase"] == "done" and state["selected"][-1] == ["party 0", s.labels[2]]


def test_classroom_the_same_partition_twice_counts_once(tmp_path):
    from fl_helpers.interop import flower

    app = flower.client_app(None)
    grid = LoopbackGrid({1: (app, {"classroom-party": 4}), 2: (app, {"classroom-party": 4}),
                         3: (app, {"classroom-party": 7})})
    s = strategy(lr=0.1, seed=0, mode="classroom", min_nodes=3)
    s.run(grid, None, rounds=1, timeout=1)
    assert s.labels == ["party 4", "party 7"]
    assert any("party 4 joined twice" in e and "would count twice" in e for e in s.events)


def test_classroom_a_node_that_cannot_load_its_data_is_left_out(tmp_path):
    from fl_helpers.interop import flower

    bad = tmp_path / "bad.csv"
    bad.write_text("age,weight\n1,2\n")
    app = flower.client_app(None)
    grid = LoopbackGrid({1: (app, {"classroom-party": 1}), 2: (app, {"csv": str(bad)})})
    s = strategy(lr=0.1, seed=0, mode="classroom", min_nodes=2)
    s.run(grid, None, rounds=1, timeout=1)
    assert s.labels == ["party 1"]
    assert any("could not load its data" in e for e in s.events)


def test_classroom_waits_for_the_start_file(tmp_path):
    from fl_helpers.interop import flower

    app = flower.client_app(None)
    grid = LoopbackGrid({1: (app, {"classroom-party": 1})})
    start = tmp_path / "start"
    s = strategy(lr=0.1, seed=0, mode="classroom", status=str(tmp_path / "s.json"), start_file=str(start))
    done = threading.Event()
    worker = threading.Thread(target=lambda: (s.run(grid, None, rounds=1, timeout=1), done.set()), daemon=True)
    worker.start()
    time.sleep(0.6)
    assert not done.is_set() and '"phase": "waiting"' in (tmp_path / "s.json").read_text()
    start.touch()
    worker.join(timeout=10)
    assert done.is_set() and len(s.recorder.losses) == 2


# --------------------------------------------------------------------------- the student's input

def test_classroom_partitions_and_csv():
    from fl_helpers.interop import classroom as C

    X, y, names = fl.load_dataset("diabetes")
    ps = C.parties()
    assert len(ps) == C.PARTIES == 30 and sum(p.n_samples for p in ps) == 442
    assert C.COLUMNS == [*names, "progression"]
    Xs = np.concatenate([p.data[0] for p in ps])
    np.testing.assert_allclose(Xs.mean(axis=0), 0, atol=1e-12)          # standardised with the full table's
    np.testing.assert_allclose(Xs.std(axis=0), 1, rtol=1e-12)
    np.testing.assert_allclose(C.party(7).data[0], ps[7].data[0])


def test_a_file_that_is_not_csv_text_gets_one_clear_sentence(tmp_path):
    from fl_helpers.interop import classroom as C

    path = tmp_path / "sheet.csv"
    path.write_bytes(b"PK\x03\x04\xff\xfe binary spreadsheet")
    with pytest.raises(C.StudentError, match="sheet.csv is not a CSV text file"):
        C.party_from_csv(path)


@pytest.mark.parametrize("text, message", [
    ("age,sex\n1,2\n", r"must have the columns age, sex, bmi.*missing: bmi, bp"),
    ("age,sex,bmi,bp,tc,ldl,hdl,tch,ltg,glu,progression,name\n" + "1," * 11 + "x\n", r"not expected: name"),
    ("age,sex,bmi,bp,tc,ldl,hdl,tch,ltg,glu,progression\n1,2,3,4,5,6,7,8,9,ten,11\n",
     r"line 2, column glu: 'ten' is not a number"),
    ("age,sex,bmi,bp,tc,ldl,hdl,tch,ltg,glu,progression\n", r"has a header but no rows"),
])
def test_a_csv_with_the_wrong_columns_gets_one_clear_sentence(tmp_path, text, message):
    from fl_helpers.interop import classroom as C

    path = tmp_path / "mine.csv"
    path.write_text(text)
    with pytest.raises(C.StudentError, match=message):
        C.party_from_csv(path)


def test_join_refuses_bad_input_with_a_message_not_a_stack_trace(tmp_path, capsys):
    from fl_helpers.interop import classroom as C
    from fl_helpers.interop.federation import free_port

    nobody = f"127.0.0.1:{free_port()}"
    bad_csv = tmp_path / "x.csv"
    bad_csv.write_text("a,b\n1,2\n")
    cases = [
        (["--server", "localhost", "--party", "1"], "must be 'host:port'"),
        (["--server", nobody, "--party", "30"], "party must be a number from 0 to 29"),
        (["--server", nobody, "--csv", str(bad_csv)], "x.csv must have the columns"),
        (["--server", nobody], "give either --party"),
        (["--server", nobody, "--party", "2"], f"cannot reach the instructor's server at {nobody}"),
    ]
    for args, message in cases:
        assert C.main(["join", *args]) == 2
        out = capsys.readouterr().out
        assert out.startswith("Cannot join: ") and message in out, out
    # and as a command: a message on stdout, exit code 2, no traceback
    done = subprocess.run([sys.executable, "-m", "fl_helpers.interop.classroom", "join", "--server", nobody,
                           "--party", "1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot reach" in done.stdout and "Traceback" not in done.stdout + done.stderr


# --------------------------------------------------------------------------- real processes

FLOWER_COMMANDS = ("flower-superlink", "flower-supernode", "flwr-serverapp", "flwr-clientapp", "flower-superexec")


def flower_processes() -> list[str]:
    """Flower processes running now (zombies, already dead, left out)."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in out if "<defunct>" not in line and any(k in line for k in FLOWER_COMMANDS)]


def test_a_superlink_that_cannot_start_is_reported_with_its_log_kept(tmp_path):
    from fl_helpers.interop.federation import FederationError, LocalFederation

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # the port answers (someone else listens) but it is not a SuperLink: start-up must fail, not hang
        with pytest.raises(FederationError, match=r"flower-superlink exited with code \d+ at start-up \(logs kept in"):
            with LocalFederation(tmp_path / "fed", port=port, start_timeout=30):
                pass
    assert (tmp_path / "fed" / "logs" / "superlink.log").read_text().strip()


def test_a_secure_classroom_on_real_processes(tmp_path):
    """The deployment runtime end to end: serve --secure (TLS, registered laptops only) and three
    students: a partition and a CSV with registered keys, one with a key nobody registered. One round
    of FedSGD: fl.fedavg's and a hand-written step's numbers; the third is refused with a message;
    every process stopped. (Notebook 17 runs flower.run(runtime="deployment") against fl.fedavg.)"""
    from fl_helpers.interop import classroom as C
    from fl_helpers.interop.federation import free_port, make_node_key

    _, csv_path = classroom_nodes(tmp_path)
    srv = tmp_path / "srv"
    keys = {name: make_node_key(tmp_path / "students", name) for name in ("alice", "bob", "mallory")}
    (srv / "keys").mkdir(parents=True)
    for name in ("alice", "bob"):                       # the instructor drops the students' .pub files here
        (srv / "keys" / f"{name}.pub").write_bytes(keys[name][1].read_bytes())
    port, lines, result = free_port(), [], {}
    server = threading.Thread(target=lambda: result.setdefault("h", C.serve(
        rounds=1, lr=0.1, min_students=2, port=port, autostart=True, timeout=30, directory=srv, secure=True,
        host="127.0.0.1", out=lines.append)), daemon=True)
    server.start()
    deadline = time.monotonic() + 60
    while sum(line.startswith("registered") for line in lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)                                   # a student who comes too early is told so
    assert "registered alice.pub" in lines and "registered bob.pub" in lines, lines

    def student(name, *args):
        return subprocess.Popen([sys.executable, "-m", "fl_helpers.interop.classroom", "join", "--server",
                                 f"127.0.0.1:{port}", "--ca", str(srv / "certs" / "ca.pem"), "--key",
                                 str(keys[name][0]), *args], stdout=subprocess.PIPE, text=True)

    students = [student("alice", "--party", "6"), student("bob", "--csv", str(csv_path)),
                student("mallory", "--party", "1")]
    try:
        server.join(timeout=150)
        assert not server.is_alive(), "\n".join(lines)
        assert students[2].wait(timeout=60) == 3
    finally:
        for s in students:
            s.terminate()
    said = [s.communicate(timeout=30)[0] for s in students]
    h = result["h"]
    six, mine = C.party(6), C.party_from_csv(csv_path)
    ref = fl.fedavg([six, mine], lr=0.1, rounds=1, seed=0)
    np.testing.assert_allclose(h.thetas, ref.thetas, rtol=1e-12, atol=1e-14)
    # one epoch of full-batch local work is FedSGD: theta_1 = -lr * sample-weighted gradient at 0, by hand
    grads = [2 / p.n_samples * np.c_[np.ones(p.n_samples), p.data[0]].T @ (0 - p.data[1]) for p in (six, mine)]
    by_hand = -0.1 * (six.n_samples * grads[0] + mine.n_samples * grads[1]) / (six.n_samples + mine.n_samples)
    np.testing.assert_allclose(h.thetas[1], by_hand, rtol=1e-12, atol=1e-14)
    assert h.engine == "flower-classroom" and h.selected[0].tolist() == [0, 1]
    assert any(line.startswith("round 1: 2 parties (party 6, csv mine.csv#") for line in lines), lines
    assert (srv / "loss.png").stat().st_size > 1000 and (srv / "history.pkl").exists()
    for text in said[:2]:
        assert "connected; waiting for the instructor to start" in text and "sent this round's update" in text
    assert "The server refused this laptop" in said[2] and "Traceback" not in said[2]
    time.sleep(0.5)
    assert not [p for p in flower_processes() if str(tmp_path) in p or f":{port}" in p]
