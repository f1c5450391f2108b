r"""A classroom federation: the instructor's laptop runs the server, every student's laptop is a party.

The task is the course's first one, on real data: linear regression of diabetes progression on the
ten baseline measurements of ``data/diabetes.csv`` (442 patients). Features and target are
standardised with the bundled table's means and standard deviations (:data:`MEANS`, :data:`STDS`,
published with the task, as a shared preprocessing recipe would be), so every laptop scales its data
the same way.

Instructor (one command; ``make classroom`` runs it)::

    python -m fl_helpers.interop.classroom serve --rounds 10 --lr 0.1 --min-students 2

starts a Flower SuperLink on port 9092 of every network interface, prints the students' command
with this laptop's address, shows live who has joined, each round's participants and the global
model's loss (and redraws ``classroom/loss.png``), and starts the rounds when the instructor presses
Enter (or, with ``--autostart``, once ``--min-students`` have joined).

Student (one command; ``make join SERVER=... PARTY=...`` runs it)::

    python -m fl_helpers.interop.classroom join --server 192.168.1.20:9092 --party 7
    python -m fl_helpers.interop.classroom join --server 192.168.1.20:9092 --csv my_patients.csv

``--party k`` trains on partition ``k`` of the bundled data (0..29, a fixed random split);
``--csv`` on the student's own table with the columns of ``data/diabetes.csv``. Everything is
checked before connecting: a bad address, an unreachable server, a party number out of range or a
CSV with wrong columns stop with one clear message, never a stack trace.

What the server sees of a student's data: the sample count, the loss of each model sent, and each
round's update (the change of the model after local training). It never receives a row; but an
update can leak a lot about the rows behind it (notebook 08 reconstructs a record from one
gradient). ``--secure`` adds TLS (a certificate the students check: they talk to the instructor's
laptop, and nobody on the network reads the updates) and node authentication (the SuperLink
refuses nodes whose key the instructor did not register). It does nothing against a curious server:
that needs secure aggregation or differential privacy (notebooks 08 and 09). And it does not make the
instructor's laptop safe on a hostile network: Flower 1.42 serves its Control API (``flwr run``,
``flwr stop``, ``flwr supernode register``) on the same port as the nodes' API, and without
Flower's account login (not part of the open-source SuperLink) it accepts these commands from
anyone who can reach the port. Run a class on a network you trust (a classroom or lab network, not
a public Wi-Fi), and stop the server after class.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ..data import load_dataset, split
from ..parties import Party

PARTIES = 30                 # the bundled data is split into this many partitions (--party 0..29)
SPLIT_SEED = 2026            # a fixed split: every laptop computes the same partition k
PORT = 9092
_X, _Y, FEATURES = load_dataset("diabetes")
COLUMNS = [*FEATURES, "progression"]
MEANS = np.r_[_X.mean(axis=0), _Y.mean()]
STDS = np.r_[_X.std(axis=0), _Y.std()]
del _X, _Y


class StudentError(ValueError):
    """A problem on the student's side, said in one sentence (the command prints it and exits)."""


def standardise(X, y) -> tuple[np.ndarray, np.ndarray]:
    """The task's scaling: ``(x - MEANS) / STDS`` column by column, the target too."""
    return (np.asarray(X) - MEANS[:-1]) / STDS[:-1], (np.asarray(y) - MEANS[-1]) / STDS[-1]


def parties() -> list[Party]:
    """All :data:`PARTIES` partitions of the bundled data (an IID split with a fixed seed), standardised."""
    X, y, _ = load_dataset("diabetes")
    X, y = standardise(X, y)
    out = split(X, y, PARTIES, seed=SPLIT_SEED)
    for i, p in enumerate(out):
        p.name = f"party {i}"
    return out


def party(k) -> Party:
    """Partition ``k`` (0..PARTIES - 1) of the bundled data, as ``join --party k`` loads it."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"party must be an int 0..{PARTIES - 1}, got {type(k).__name__}")
    if not 0 <= k < PARTIES:
        raise StudentError(f"party must be a number from 0 to {PARTIES - 1} (the bundled data has {PARTIES} "
                           f"partitions), got {k}")
    return parties()[int(k)]


_partition = party          # check_join's parameter is called party too


def party_from_csv(path) -> Party:
    """A party from the student's own CSV: a header with :data:`COLUMNS` (any order), numbers below.

    Raises :class:`StudentError` (a ValueError) naming the problem: a missing file, missing or unknown
    columns, a value that is not a number (with its row and column), or no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise StudentError(f"csv file not found: {path}")
    try:
        return _read_csv(path)
    except (UnicodeDecodeError, csv.Error):
        raise StudentError(f"{path.name} is not a CSV text file (save it as CSV, UTF-8)") from None
    except OSError as exc:
        raise StudentError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_csv(path: Path) -> Party:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in COLUMNS if c not in header]
        extra = [c for c in header if c not in COLUMNS]
        if missing or extra:
            raise StudentError(f"{path.name} must have the columns {', '.join(COLUMNS)}; "
                               + (f"missing: {', '.join(missing)}" if missing else "")
                               + ("; " if missing and extra else "")
                               + (f"not expected: {', '.join(extra)}" if extra else ""))
        order = [header.index(c) for c in COLUMNS]
        rows = []
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise StudentError(f"{path.name}, line {line}: {len(row)} values, the header has {len(header)}")
            try:
                rows.append([float(row[j]) for j in order])
            except ValueError:
                bad = next(j for j in order if not _is_number(row[j]))
                raise StudentError(f"{path.name}, line {line}, column {header[bad]}: {row[bad]!r} is not a number"
                                   ) from None
    if not rows:
        raise StudentError(f"{path.name} has a header but no rows")
    table = np.array(rows)
    if not np.all(np.isfinite(table)):
        line = 2 + int(np.flatnonzero(~np.isfinite(table).all(axis=1))[0])
        raise StudentError(f"{path.name}, line {line}: values must be finite numbers")
    X, y = standardise(table[:, :-1], table[:, -1])
    return Party(X, y, name=f"csv {path.name}")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def lan_address() -> str:
    """This laptop's address on the local network (what students type), or 127.0.0.1 if none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))          # TEST-NET-1: no packet is sent for a UDP connect
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


# --------------------------------------------------------------------------- the instructor

def serve(*, rounds: int = 10, lr: float = 0.1, local_epochs: int = 1, batch_size=None, fraction: float = 1.0,
          min_students: int = 1, port: int = PORT, secure: bool = False, autostart: bool = False,
          timeout: float = 60.0, seed: int = 0, directory="classroom", host: str = "0.0.0.0",
          out=print, wait_for_enter: bool = True):
    """Run the classroom's server side until the rounds are done; returns the History (or None).

    See the module docstring. ``directory`` keeps the logs, ``status.json`` (the live state),
    ``loss.png``, ``history.pkl`` and, with ``secure``, ``certs/ca.pem`` (give it to the students)
    and ``keys/`` (drop each student's ``.pub`` file there: it is registered within a second).
    """
    from .. import validation as valid
    from ..history import History  # noqa: F401  (the pickled result holds one)
    from .federation import LocalFederation, make_certificates, write_app

    rounds = valid.integer("rounds", rounds, minimum=1)               # checked before any student joins
    lr = valid.positive_float("lr", lr)
    local_epochs = valid.integer("local_epochs", local_epochs, minimum=1)
    batch_size = valid.optional_batch_size(batch_size)
    fraction = valid.fraction(fraction)
    min_students = valid.integer("min_students", min_students, minimum=1)
    port = valid.integer("port", port, minimum=1, maximum=65535)
    timeout = valid.positive_float("timeout", timeout)
    seed = valid.integer("seed", seed, minimum=0)

    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    status, start = directory / "status.json", directory / "start"
    for stale in (status, start, directory / "result.pkl"):
        stale.unlink(missing_ok=True)
    lan = lan_address()
    certs = make_certificates(directory / "certs", hosts=(lan, "127.0.0.1", "localhost")) if secure else None
    with LocalFederation(directory, host=host, port=port, tls=certs, auth=secure, keep=True) as fed:
        spec = {"strategy": dict(lr=lr, local_epochs=local_epochs, batch_size=batch_size, fraction=fraction,
                                 seed=seed, mode="classroom", status=str(status), start_file=str(start),
                                 min_nodes=min_students),
                "theta0": None, "rounds": rounds, "timeout": timeout, "out": str(directory / "result.pkl"),
                "engine": "flower-classroom"}
        with open(directory / "spec.pkl", "wb") as fh:
            pickle.dump(spec, fh)
        app = write_app(directory / "app")
        extra = " --ca ca.pem --key student.key" if secure else ""
        out(f"Classroom server on {lan}:{fed.port}" + (" (TLS, registered laptops only)" if secure else
                                                       " (no TLS: a trusted network only)"))
        out(f"Students run:  make join SERVER={lan}:{fed.port} PARTY=<0..{PARTIES - 1}>"
            + (" CA=ca.pem KEY=student.key" if secure else ""))
        out(f"          or:  python -m fl_helpers.interop.classroom join --server {lan}:{fed.port} "
            f"--party <0..{PARTIES - 1}>{extra}")
        if secure:
            out(f"Give the students {certs.ca}; put each student's .pub file in {directory / 'keys'}")
        result: dict = {}
        runner = threading.Thread(target=_submit, args=(fed, app, directory, rounds, timeout, result), daemon=True)
        runner.start()
        if wait_for_enter and not autostart:
            threading.Thread(target=_enter_starts, args=(start, out), daemon=True).start()
        elif autostart:
            start.touch()
        _live_view(fed, status, runner, directory, secure, out)
        runner.join()
        if "error" in result:
            out(f"The run failed: {result['error']}")
            return None
    with open(directory / "result.pkl", "rb") as fh:
        final = pickle.load(fh)
    if "error" in final:
        out(f"The run failed: {final['error']} (logs in {directory / 'logs'})")
        return None
    history = final["history"]
    with open(directory / "history.pkl", "wb") as fh:
        pickle.dump(final, fh)
    out(f"Done: {len(history.losses) - 1} rounds, loss {history.losses[0]:.4f} -> {history.losses[-1]:.4f}; "
        f"history in {directory / 'history.pkl'}")
    return history


def _submit(fed, app, directory, rounds, timeout, result) -> None:
    try:
        fed.submit(app, {"spec": str(directory / "spec.pkl")}, timeout=4 * 3600 + timeout * (2 * rounds + 3))
    except Exception as exc:                                   # shown by the live view's caller
        result["error"] = str(exc)


def _enter_starts(start: Path, out) -> None:
    out("Press Enter to start the rounds with the students who have joined.")
    try:
        sys.stdin.readline()
    except (OSError, ValueError):
        return
    start.touch()


def _live_view(fed, status: Path, runner, directory: Path, secure: bool, out) -> None:
    """Print what changes in the status file (joins, rounds, events) until the run ends."""
    seen_events, joined, shown_round = 0, -1, -1
    registered: set[tuple] = set()
    while True:
        last = not runner.is_alive()          # one more pass after the run ended: its last rounds
        if secure:
            for pub in sorted((directory / "keys").glob("*.pub")) if (directory / "keys").exists() else []:
                stamp = (pub.name, pub.stat().st_mtime)
                if stamp not in registered:
                    registered.add(stamp)                      # a fixed (re-copied) file is tried again
                    try:
                        fed.register(pub)
                        out(f"registered {pub.name}")
                    except Exception as exc:                   # a bad key file must not stop the class
                        out(f"could not register {pub.name}: {str(exc).splitlines()[0]}")
        try:
            state = json.loads(status.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            if last:
                return
            time.sleep(0.5)
            continue
        if state["phase"] == "waiting" and state.get("joined") != joined:
            joined = state["joined"]
            out(f"{joined} laptop(s) joined (at least {state.get('min_nodes', 1)} needed)")
        for text in state["events"][seen_events:]:
            out(f"  ! {text}")
        seen_events = len(state["events"])
        losses = state["losses"]
        if len(losses) - 1 > shown_round:
            for t in range(shown_round + 1, len(losses)):
                who = state["parties"] if t == 0 else state["selected"][t - 1]
                out(f"round {t}: {len(who)} parties ({', '.join(who)}), loss {losses[t]:.4f}")
            shown_round = len(losses) - 1
            _plot(losses, directory / "loss.png")
        if last:
            return
        time.sleep(0.5)


def _plot(losses, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..plotting import plot_losses

    ax = plot_losses({"classroom federation": np.asarray(losses)}, title="global model's loss (live)")
    ax.figure.savefig(path, dpi=80)
    plt.close(ax.figure)


# --------------------------------------------------------------------------- the student

def check_join(server: str, *, party: int | None = None, csv_path=None, ca=None, key=None,
               reach_timeout: float = 5.0) -> tuple[dict, Party]:
    """Everything ``join`` checks before it starts a node: ``(node_config, the party)``.

    Raises :class:`StudentError` with one sentence for: a malformed address, neither or both of
    ``party``/``csv_path``, a party number out of range, a bad CSV, a missing CA or key file, or a
    server that does not answer at ``server``.
    """
    from .federation import reachable, split_address

    try:
        split_address(server)
    except (TypeError, ValueError) as exc:
        raise StudentError(f"--server: {exc}") from None
    if (party is None) == (csv_path is None):
        raise StudentError("give either --party <0..29> (a partition of the bundled data) or --csv <file>, not "
                           + ("both" if party is not None else "neither"))
    if party is not None:
        p, config = _partition(party), {"classroom-party": int(party)}
    else:
        p, config = party_from_csv(csv_path), {"csv": str(Path(csv_path).resolve())}
    for name, path in (("--ca", ca), ("--key", key)):
        if path is not None and not Path(path).is_file():
            raise StudentError(f"{name}: file not found: {path}")
    if not reachable(server, timeout=reach_timeout):
        raise StudentError(f"cannot reach the instructor's server at {server}: check the address (the "
                           f"instructor's screen shows it) and that this laptop is on the same network")
    return config, p


def join(server: str, *, party: int | None = None, csv_path=None, ca=None, key=None, out=print,
         max_wait: float = 600.0) -> int:
    """Join a classroom federation as one party; returns the exit code (0 when the server ended the run)."""
    from .federation import _bin, _env, config_arg, free_port, stop_group

    if os.name != "posix":
        out("Cannot join: the classroom's join command runs on Linux and macOS (on Windows: inside WSL)")
        return 2
    try:
        config, p = check_join(server, party=party, csv_path=csv_path, ca=ca, key=key)
        node_config = config_arg(config)
    except (StudentError, ValueError) as exc:
        out(f"Cannot join: {exc}")
        return 2
    argv = [_bin("flower-supernode"), "--superlink", server, "--node-config", node_config,
            "--port", str(free_port()), "--max-wait-time", str(float(max_wait))]
    argv += ["--root-certificates", str(ca)] if ca else ["--insecure"]
    if key:
        argv += ["--auth-supernode-private-key", str(key)]
    out(f"Joining {server} as {p.name} with {p.n_samples} patients; your data stays on this laptop. "
        "Ctrl-C leaves the class.")
    home = Path.home() / ".fl-course-flwr"
    home.mkdir(exist_ok=True)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(home),
                            start_new_session=True)
    tail: list[str] = []
    previous = signal.signal(signal.SIGTERM, _interrupt)
    connected = False
    try:
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-20:]
            if "Receiving: train" in line:
                out("training on your data ...")
            elif "Sending: train" in line:
                out("  sent this round's update")
            elif "SuperNode ID" in line:
                connected = True
                out("connected; waiting for the instructor to start")
            elif "SuperNode terminated" in line:
                break
            elif "Exit Code:" in line:                  # Flower gave up (e.g. 305: refused); its helpers may linger
                tail += [next(proc.stdout, "").rstrip() for _ in range(3)]
                break
    except KeyboardInterrupt:
        out("Left the class.")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_group(proc)                           # the node and its helpers never outlive this command
    code = next((int(t.split("Exit Code:")[1]) for t in tail if "Exit Code:" in t), proc.returncode)
    if code == 305 and key:
        out("The server refused this laptop: send your .pub file to the instructor (join --make-key NAME makes "
            "one), wait until the instructor's screen says it is registered, then join again with --key and --ca")
        return 3
    if code == 305 or not connected:
        out(f"Could not connect to {server} (Flower's code {code}): in a secure class, join with --ca ca.pem "
            "(and --key); last lines from Flower:\n" + "\n".join(tail[-6:]))
        return 3 if code == 305 else 1
    if code not in (0, None, -signal.SIGTERM):
        out(f"The connection ended with Flower's code {code}; last lines:\n" + "\n".join(tail[-6:]))
        return 1
    out("The server closed the connection: the class has ended, or the instructor restarted the server (then run "
        "this command again to rejoin; the new run starts from scratch, nothing of the old one is mixed in).")
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


# --------------------------------------------------------------------------- the command line

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fl_helpers.interop.classroom",
                                     description="A federated-learning class on Flower: serve (instructor), "
                                                 "join (student), local (all on this machine).")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="the instructor's server")
    s.add_argument("--rounds", type=int, default=10)
    s.add_argument("--lr", type=float, default=0.1)
    s.add_argument("--local-epochs", type=int, default=1)
    s.add_argument("--fraction", type=float, default=1.0)
    s.add_argument("--min-students", type=int, default=1)
    s.add_argument("--port", type=int, default=PORT)
    s.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for replies in a round")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--secure", action="store_true", help="TLS and registered laptops only")
    s.add_argument("--autostart", action="store_true", help="start once --min-students have joined")
    s.add_argument("--dir", default="classroom")
    j = sub.add_parser("join", help="a student's laptop joins as one party")
    j.add_argument("--server", help="the instructor's address host:port")
    j.add_argument("--party", type=int, help=f"a partition of the bundled data, 0..{PARTIES - 1}")
    j.add_argument("--csv", help=f"your own CSV with the columns {','.join(COLUMNS)}")
    j.add_argument("--ca", help="the instructor's ca.pem (secure class)")
    j.add_argument("--key", help="your private key (secure class)")
    j.add_argument("--make-key", metavar="NAME", help="make NAME.key and NAME.pub here and exit")
    local = sub.add_parser("local", help="a SuperLink and N SuperNodes on this machine; compare with fl.fedavg")
    local.add_argument("--parties", type=int, default=3)
    local.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return 0 if serve(rounds=args.rounds, lr=args.lr, local_epochs=args.local_epochs, fraction=args.fraction,
                              min_students=args.min_students, port=args.port, timeout=args.timeout, seed=args.seed,
                              secure=args.secure, autostart=args.autostart, directory=args.dir) is not None else 1
        if args.command == "join":
            if args.make_key:
                from .federation import make_node_key

                private, public = make_node_key(".", args.make_key)
                print(f"made {private} (keep it) and {public} (send it to the instructor)")
                return 0
            if not args.server:
                print("Cannot join: --server host:port is needed (the instructor's screen shows it)")
                return 2
            return join(args.server, party=args.party, csv_path=args.csv, ca=args.ca, key=args.key)
        return local_demo(n_parties=args.parties, rounds=args.rounds)
    except KeyboardInterrupt:
        print("Stopped.")
        return 130


def local_demo(*, n_parties: int = 3, rounds: int = 2, out=print) -> int:
    """``make federation``: the classroom task on a SuperLink and ``n_parties`` SuperNodes here, vs fl.fedavg."""
    from .. import fedavg
    from . import flower

    ps = parties()[:n_parties]
    kw = dict(lr=0.1, rounds=rounds, local_epochs=2, batch_size=8, seed=0)
    out(f"Starting a SuperLink and {n_parties} SuperNodes on 127.0.0.1 ({rounds} rounds of FedAvg) ...")
    t0 = time.perf_counter()
    deployed = flower.run(ps, runtime="deployment", **kw)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    local = fedavg(ps, **kw)
    in_process = time.perf_counter() - t0
    gap = float(np.abs(deployed.thetas - local.thetas).max())
    out(f"Flower deployment: {seconds:.1f} s; in process: {in_process * 1e3:.1f} ms; "
        f"largest difference of the models, round by round: {gap:.1e}")
    out(f"loss per round: {np.array2string(deployed.losses, precision=4)}")
    return 0 if gap <= 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
