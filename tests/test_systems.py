"""fl_helpers.systems: the simulated clock, synchronous rounds with deadlines, FedAsync and FedBuff.

The hand-built federation below has 3 parties of 2, 4 and 3 samples, 1 feature (p = 2 numbers,
16 bytes a model in float64) and these devices, whose job times are worked out by hand:

=====  ================  ========  =========  =======================  ===============================
party  seconds / sample  latency   bandwidth  async job (16 B up)      sync job (24 B up: update+weight)
=====  ================  ========  =========  =======================  ===============================
0      0.5 (x 2 = 1.0)   0.25      16 B/s     1.25 + 1.0 + 1.25 = 3.5  1.25 + 1.0 + 1.75 = 4.0
1      0.125 (x 4 = 0.5) 0         32 B/s     0.5 + 0.5 + 0.5 = 1.5    0.5 + 0.5 + 0.75 = 1.75
2      1.0 (x 3 = 3.0)   1.0       inf        1.0 + 3.0 + 1.0 = 5.0    1.0 + 3.0 + 1.0 = 5.0
=====  ================  ========  =========  =======================  ===============================

All parties start at time 0 and restart on arrival, so (no jitter) party 1 arrives at 1.5, 3, 4.5,
6, 7.5, party 0 at 3.5, 7, party 2 at 5.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats

import fl_helpers as fl
import fl_helpers.server as server_module
from fl_helpers import randomness
from fl_helpers.systems import (
    SYSTEM_STREAMS,
    Clock,
    ClockPlan,
    DeviceProfile,
    Distribution,
    EventQueue,
    fedasync,
    fedbuff,
    plan_round,
    staleness_weight,
    sync_fedavg,
)

THETA0 = np.array([0.5, -0.25])
LR = 0.1


@pytest.fixture
def trio():
    return [fl.Party([[1.0], [2.0]], [1.0, 0.0]),
            fl.Party([[0.0], [1.0], [-1.0], [2.0]], [1.0, 2.0, 0.0, 3.0]),
            fl.Party([[1.0], [-2.0], [0.5]], [0.0, 1.0, 2.0])]


@pytest.fixture
def clock():
    return Clock([0.5, 0.125, 1.0], latency=[0.25, 0.0, 1.0], bandwidth=[16.0, 32.0, np.inf])


@pytest.fixture
def parties(unequal_parties):
    return unequal_parties


def grad(party, theta):
    return party.gradient(theta)


# --- distributions, devices and the clock ---------------------------------------------------------

@pytest.mark.parametrize("dist, reference", [
    (Distribution("exponential", mean=0.3), stats.expon(scale=0.3)),
    (Distribution("lognormal", median=0.02, sigma=0.8), stats.lognorm(s=0.8, scale=0.02)),
    (Distribution("pareto", minimum=0.5, alpha=3.0), stats.pareto(b=3.0, scale=0.5)),
])
def test_distributions_match_scipy_by_monte_carlo(dist, reference):
    draws = dist.sample(np.random.default_rng(0), 200_000)

    assert dist.mean == pytest.approx(reference.mean(), rel=1e-12)          # the stated formula
    assert draws.mean() == pytest.approx(reference.mean(), rel=0.01)
    assert stats.kstest(draws, reference.cdf).pvalue > 1e-3


def test_pareto_tail_is_heavy_and_has_no_mean_below_alpha_1():
    draws = Distribution("pareto", minimum=1.0, alpha=1.5).sample(np.random.default_rng(1), 200_000)

    for u in (2.0, 10.0, 100.0):
        tail = u ** -1.5                                                      # P(X > u) = (x_m / u)^alpha
        assert np.mean(draws > u) == pytest.approx(tail, abs=4 * np.sqrt(tail * (1 - tail) / draws.size))
    assert Distribution("pareto", minimum=1.0, alpha=1.0).mean == np.inf
    assert Distribution("constant", value=2.5).sample(None) == 2.5


def test_device_profile_is_deterministic_and_keyed_per_party_and_attribute():
    profile = DeviceProfile(compute=Distribution("exponential", mean=0.01),
                            latency=Distribution("lognormal", median=0.05, sigma=1.0), bandwidth=1e6)

    a, b = profile.clock(50, seed=3), profile.clock(50, seed=3)
    small = profile.clock(10, seed=3)
    other_latency = DeviceProfile(compute=profile.compute, latency=0.2).clock(50, seed=3)

    np.testing.assert_array_equal(a.seconds_per_sample, b.seconds_per_sample)
    np.testing.assert_array_equal(a.latency, b.latency)
    np.testing.assert_array_equal(a.seconds_per_sample[:10], small.seconds_per_sample)  # party i's own draws
    np.testing.assert_array_equal(a.seconds_per_sample, other_latency.seconds_per_sample)
    assert not np.array_equal(a.seconds_per_sample, profile.clock(50, seed=4).seconds_per_sample)
    np.testing.assert_array_equal(a.bandwidth, 1e6)


def test_device_profile_draws_have_the_stated_mean():
    clock = DeviceProfile(compute=Distribution("exponential", mean=0.02)).clock(4000, seed=0)

    assert clock.seconds_per_sample.mean() == pytest.approx(0.02, rel=0.05)
    np.testing.assert_array_equal(clock.latency, 0.0)
    np.testing.assert_array_equal(clock.bandwidth, np.inf)


def test_job_times_by_hand(clock):
    sizes = np.array([2, 4, 3])

    async_ = clock.job_time([0, 1, 2], samples=sizes, bytes_down=16, bytes_up=16)
    sync = clock.job_time([0, 1, 2], samples=sizes, bytes_down=16, bytes_up=24)
    three_epochs = clock.job_time([0, 1, 2], samples=3 * sizes, bytes_down=16, bytes_up=24)

    np.testing.assert_allclose(async_, [3.5, 1.5, 5.0], rtol=1e-15)
    np.testing.assert_allclose(sync, [4.0, 1.75, 5.0], rtol=1e-15)
    np.testing.assert_allclose(three_epochs, [6.0, 2.75, 11.0], rtol=1e-15)


def test_jitter_adds_to_each_job_and_depends_only_on_seed_task_and_party(clock):
    fixed = Clock(clock.seconds_per_sample, latency=clock.latency, bandwidth=clock.bandwidth, jitter=0.25)
    noisy = Clock([0.1] * 3, jitter=Distribution("exponential", mean=1.0), seed=5)

    np.testing.assert_allclose(fixed.job_time([0, 1, 2], samples=[2, 4, 3], bytes_down=16, bytes_up=16),
                               [3.75, 1.75, 5.25], rtol=1e-15)
    np.testing.assert_array_equal(noisy.extra([2], 7), noisy.extra([0, 1, 2], 7)[2:])
    assert noisy.extra([1], 7)[0] != noisy.extra([1], 8)[0]
    assert np.all(noisy.extra([0, 1, 2], 1) > 0)


def test_device_and_dispatch_streams_are_registered_in_the_randomness_contract():
    assert SYSTEM_STREAMS == {"compute": 100, "latency": 101, "bandwidth": 102, "jitter": 103, "dispatch": 104}
    assert all(randomness.STREAMS[name] == number for name, number in SYSTEM_STREAMS.items())
    assert len(set(randomness.STREAMS.values())) == len(randomness.STREAMS)         # no two streams share a number
    profile = DeviceProfile(compute=Distribution("exponential", mean=0.01),
                            latency=Distribution("lognormal", median=0.05, sigma=1.0),
                            bandwidth=Distribution("exponential", mean=1e5),
                            jitter=Distribution("exponential", mean=1.0))

    clock = profile.clock(3, seed=11)

    def hand(*key):                                     # SeedSequence(seed, spawn_key=(stream, ...)), written out
        return np.random.default_rng(np.random.SeedSequence(11, spawn_key=key))

    np.testing.assert_array_equal(clock.seconds_per_sample, [hand(100, i).exponential(0.01) for i in range(3)])
    np.testing.assert_array_equal(clock.latency, [hand(101, i).lognormal(np.log(0.05), 1.0) for i in range(3)])
    np.testing.assert_array_equal(clock.bandwidth, [hand(102, i).exponential(1e5) for i in range(3)])
    np.testing.assert_array_equal(clock.extra([0, 2], 4), [hand(103, 4, 0).exponential(1.0),
                                                           hand(103, 4, 2).exponential(1.0)])


def test_event_queue_pops_in_time_order_and_ties_in_push_order():
    queue = EventQueue()
    for time, party in [(3.0, 0), (1.5, 1), (3.0, 2), (0.0, 3), (1.5, 4)]:
        queue.push(time, party)

    popped = [queue.pop() for _ in range(len(queue))]

    assert [(e.time, e.party) for e in popped] == [(0.0, 3), (1.5, 1), (1.5, 4), (3.0, 0), (3.0, 2)]
    with pytest.raises(IndexError, match="empty"):
        queue.pop()


# --- synchronous rounds ---------------------------------------------------------------------------

def test_deadline_drops_exactly_the_late_parties(trio, clock):
    sync = dict(local_epochs=1, bytes_down=16, bytes_up=24)
    sizes = [2, 4, 3]

    late = plan_round(clock, [0, 1, 2], sizes, deadline=4.5, **sync)
    tight = plan_round(clock, [0, 1, 2], sizes, deadline=5.0, **sync)
    nobody = plan_round(clock, [0, 1, 2], sizes, deadline=1.0, **sync)
    waits = plan_round(clock, [0, 1, 2], sizes, **sync)

    np.testing.assert_array_equal(late.working, [0, 1])                     # party 2 needs 5.0 s
    assert late.duration == 4.5                                              # the server waited for it
    np.testing.assert_array_equal(tight.working, [0, 1, 2])                 # 5.0 <= 5.0
    assert tight.duration == 5.0 and waits.duration == 5.0
    assert len(nobody.working) == 0 and nobody.duration == 1.0


def test_sync_round_with_deadline_averages_the_on_time_parties_by_hand(trio, clock):
    h = sync_fedavg(trio, profile=clock, lr=LR, rounds=2, deadline=4.5, theta0=THETA0)

    theta1 = THETA0 - LR * (2 * grad(trio[0], THETA0) + 4 * grad(trio[1], THETA0)) / 6
    np.testing.assert_allclose(h.thetas[1], theta1, rtol=1e-13)
    np.testing.assert_allclose(h.times, [0.0, 4.5, 9.0], rtol=1e-15)
    np.testing.assert_array_equal(h.contributions, [2, 2, 0])            # the slow party is never heard
    np.testing.assert_allclose(h.data_shares, [2 / 6, 4 / 6, 0.0], rtol=1e-15)
    np.testing.assert_array_equal(h.bytes_up, [2 * 24, 2 * 24])
    np.testing.assert_array_equal(h.bytes_down, [3 * 16, 3 * 16])
    np.testing.assert_array_equal(h.metrics["dropped"], [1, 1])


def test_partial_work_uses_the_epochs_that_fit_by_hand(trio, clock):
    sync = dict(local_epochs=3, bytes_down=16, bytes_up=24, partial_work=True)
    # fixed seconds (down + up): 3.0, 1.25, 2.0; one epoch: 1.0, 0.5, 3.0
    all_in = plan_round(clock, [0, 1, 2], [2, 4, 3], deadline=5.5, **sync)
    boundary = plan_round(clock, [0, 1, 2], [2, 4, 3], deadline=5.0, **sync)
    short = plan_round(clock, [0, 1, 2], [2, 4, 3], deadline=4.5, **sync)

    np.testing.assert_array_equal(all_in.epochs, [2, 3, 1])
    np.testing.assert_allclose(all_in.finish, [5.0, 2.75, 5.0])
    assert all_in.duration == 5.0                                         # everyone delivered before 5.5
    np.testing.assert_array_equal(boundary.epochs, [2, 3, 1])             # 3 + 2 * 1.0 = 5.0 fits exactly
    np.testing.assert_array_equal(short.working, [0, 1])
    np.testing.assert_array_equal(short.epochs, [1, 3])
    assert short.duration == 4.5

    h = sync_fedavg(trio, profile=clock, lr=LR, rounds=1, deadline=5.5, partial_work=True, local_epochs=3,
                    theta0=THETA0)
    locals_ = [p.local_update(THETA0, lr=LR, epochs=e).theta for p, e in zip(trio, [2, 3, 1], strict=True)]
    np.testing.assert_allclose(h.thetas[1], (2 * locals_[0] + 4 * locals_[1] + 3 * locals_[2]) / 9, rtol=1e-13)
    assert h.times[1] == 5.0


def test_dropping_instead_of_partial_work(trio, clock):
    h = sync_fedavg(trio, profile=clock, lr=LR, rounds=1, deadline=5.5, local_epochs=3, theta0=THETA0)

    np.testing.assert_array_equal(h.selected[0], [1])                    # only party 1 (2.75 s) does 3 epochs
    np.testing.assert_allclose(h.thetas[1], trio[1].local_update(THETA0, lr=LR, epochs=3).theta, rtol=1e-13)


@pytest.mark.parametrize("engine", ["loop", "vectorized"])
def test_zero_delays_is_fedavg_exactly(parties, engine):
    args = dict(lr=0.05, rounds=6, local_epochs=2, batch_size=4, fraction=0.5, seed=7, engine=engine)

    h = sync_fedavg(parties, profile=Clock(np.zeros(len(parties))), **args)
    ref = fl.fedavg(parties, **args)

    np.testing.assert_array_equal(h.thetas, ref.thetas)
    np.testing.assert_allclose(h.losses, ref.losses, rtol=1e-12)
    np.testing.assert_array_equal(h.bytes_up, ref.bytes_up)
    np.testing.assert_array_equal(h.bytes_down, ref.bytes_down)
    for a, b in zip(h.selected, ref.selected, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(h.times, 0.0)


def test_equal_speeds_without_deadline_is_fedavg_and_each_round_lasts_one_job(parties):
    h = sync_fedavg(parties, profile=DeviceProfile(compute=0.01, latency=0.5), lr=0.05, rounds=4, seed=1)
    ref = fl.fedavg(parties, lr=0.05, rounds=4, seed=1)

    np.testing.assert_array_equal(h.thetas, ref.thetas)
    slowest = 0.5 + 0.01 * max(p.n_samples for p in parties) + 0.5
    np.testing.assert_allclose(np.diff(h.times), slowest, rtol=1e-14)


def test_random_devices_change_the_clock_not_the_models(parties):
    profile = DeviceProfile(compute=Distribution("pareto", minimum=1e-3, alpha=1.2), latency=0.05)
    h = sync_fedavg(parties, profile=profile, lr=0.05, rounds=5, seed=2)

    np.testing.assert_array_equal(h.thetas, fl.fedavg(parties, lr=0.05, rounds=5, seed=2).thetas)
    assert np.all(np.diff(h.times) > 0)


def test_clock_plan_gives_each_selected_party_its_epochs_by_hand(clock):
    sizes = [2, 4, 3]
    drop = ClockPlan(clock, sizes, local_epochs=1, bytes_down=16, bytes_up=24, deadline=4.5)
    partial = ClockPlan(clock, sizes, local_epochs=3, bytes_down=16, bytes_up=24, deadline=4.5, partial_work=True)
    waits = ClockPlan(clock, sizes, local_epochs=1, bytes_down=16, bytes_up=24)

    np.testing.assert_array_equal(drop(np.array([0, 1, 2]), 1), [1, 1, 0])             # party 2 needs 5.0 s
    np.testing.assert_array_equal(drop(np.array([1, 2]), 2), [1, 0])
    np.testing.assert_array_equal(partial(np.array([0, 1, 2]), 1), [1, 3, 0])          # plan_round's "short"
    np.testing.assert_array_equal(waits(np.array([0, 2]), 1), [1, 1])
    assert drop.metrics(fl.server.RoundInfo(1, *[None] * 6)) == {"round_seconds": 4.5, "dropped": 1.0}
    assert drop.metrics(fl.server.RoundInfo(2, *[None] * 6)) == {"round_seconds": 4.5, "dropped": 1.0}
    assert waits.metrics(fl.server.RoundInfo(1, *[None] * 6)) == {"round_seconds": 5.0, "dropped": 0.0}
    np.testing.assert_array_equal(drop.times(2), [0.0, 4.5, 9.0])


def test_sync_fedavg_is_one_call_of_train_with_a_clock_plan(parties, monkeypatch):
    calls = []
    real = server_module.train

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(server_module, "train", spy)
    theta0 = np.array([0.1, -0.2, 0.3, 0.05])
    h = sync_fedavg(parties, profile=DeviceProfile(compute=Distribution("lognormal", median=3e-3, sigma=1.0)),
                    lr=0.05, rounds=3, deadline=0.1, partial_work=True, local_epochs=3, batch_size=4, fraction=0.5,
                    weighting="uniform", prox_mu=0.2, theta0=theta0, seed=5, engine="vectorized")

    assert len(calls) == 1                                           # the round loop is train's, run once
    kw = calls[0]
    assert isinstance(kw["stragglers"], ClockPlan) and kw["stragglers"].clock is h.clock
    assert (kw["lr"], kw["rounds"], kw["local_epochs"], kw["batch_size"], kw["fraction"], kw["weighting"],
            kw["prox_mu"], kw["seed"]) == (0.05, 3, 3, 4, 0.5, "uniform", 0.2, 5)
    np.testing.assert_array_equal(kw["theta0"], theta0)
    assert kw["engine"].name == "vectorized" == h.engine
    np.testing.assert_array_equal(h.thetas[0], theta0)


@pytest.mark.parametrize("partial_work", [False, True], ids=["drop", "partial"])
def test_deadline_run_equals_train_with_the_equivalent_plan(parties, partial_work):
    profile = DeviceProfile(compute=Distribution("lognormal", median=3e-3, sigma=1.0),
                            latency=Distribution("exponential", mean=0.02), bandwidth=1e4,
                            jitter=Distribution("exponential", mean=0.01))
    args = dict(lr=0.05, rounds=5, local_epochs=3, batch_size=4, fraction=0.75, weighting="uniform", prox_mu=0.1,
                seed=8)

    h = sync_fedavg(parties, profile=profile, deadline=0.25, partial_work=partial_work, **args)
    plan = ClockPlan(profile.clock(len(parties), seed=8), [p.n_samples for p in parties], local_epochs=3,
                     bytes_down=4 * 8, bytes_up=5 * 8, deadline=0.25, partial_work=partial_work)
    ref = fl.train(parties, stragglers=plan, **args)

    assert h.metrics["dropped"].sum() > 0                            # the deadline bites
    for name in ("thetas", "losses", "party_losses", "bytes_up", "bytes_down"):
        np.testing.assert_array_equal(getattr(h, name), getattr(ref, name))
    assert [s.tolist() for s in h.selected] == [s.tolist() for s in ref.selected]
    assert h.metrics.keys() == ref.metrics.keys() == {"round_seconds", "dropped"}
    for name in ref.metrics:
        np.testing.assert_array_equal(h.metrics[name], ref.metrics[name])
    np.testing.assert_array_equal(h.times, plan.times(5))
    np.testing.assert_array_equal(h.times[1:], np.cumsum(ref.metrics["round_seconds"]))
    np.testing.assert_array_equal(h.contributions, np.bincount(np.concatenate(ref.selected), minlength=len(parties)))


def test_sync_fedavg_stops_where_train_diverges(parties):
    h = sync_fedavg(parties, profile=Clock(np.full(len(parties), 1e-3)), lr=5.0, rounds=30, local_epochs=2, seed=3)

    assert h.diverged_at is not None
    assert len(h.times) == len(h.losses) == h.rounds + 1 == len(h.staleness) + 1
    assert len(h.metrics["round_seconds"]) == h.rounds


# --- FedAsync ------------------------------------------------------------------------------------

def test_staleness_functions_by_hand():
    np.testing.assert_allclose(staleness_weight([0, 3, 8], "polynomial", a=0.5), [1.0, 0.5, 1 / 3], rtol=1e-15)
    np.testing.assert_allclose(staleness_weight([0, 4, 5, 6], "hinge", a=10, b=4), [1, 1, 1 / 11, 1 / 21])
    np.testing.assert_array_equal(staleness_weight([0, 7], "constant"), [1.0, 1.0])
    assert staleness_weight(1, "polynomial", a=1.0) == 0.5


def test_fedasync_arrival_order_and_staleness_by_hand(trio, clock):
    h = fedasync(trio, profile=clock, lr=LR, updates=7, theta0=THETA0)

    np.testing.assert_allclose(h.times, [0, 1.5, 3.0, 3.5, 4.5, 5.0, 6.0, 7.0], rtol=1e-15)
    assert [int(s[0]) for s in h.selected] == [1, 1, 0, 1, 2, 1, 0]
    assert [int(s[0]) for s in h.staleness] == [0, 0, 2, 1, 4, 1, 3]
    np.testing.assert_array_equal(h.contributions, [2, 4, 1])
    np.testing.assert_array_equal(h.bytes_up, 16)
    np.testing.assert_array_equal(h.bytes_down, [3 * 16, 16, 16, 16, 16, 16, 16])   # first wave; restarts


def test_fedasync_mixing_by_hand(trio, clock):
    alpha, a = 0.6, 0.5
    h = fedasync(trio, profile=clock, lr=LR, updates=3, mixing=alpha, a=a, theta0=THETA0)

    th1 = (1 - alpha) * THETA0 + alpha * (THETA0 - LR * grad(trio[1], THETA0))        # party 1, fresh
    th2 = (1 - alpha) * th1 + alpha * (th1 - LR * grad(trio[1], th1))                  # party 1 again, fresh
    alpha3 = alpha * (1 + 2) ** -a                                                     # party 0, staleness 2
    th3 = (1 - alpha3) * th2 + alpha3 * (THETA0 - LR * grad(trio[0], THETA0))
    np.testing.assert_allclose(h.thetas[1:], [th1, th2, th3], rtol=1e-13)
    np.testing.assert_allclose(h.metrics["alpha"], [alpha, alpha, alpha3], rtol=1e-15)
    loss = sum(p.n_samples * p.loss(th3) for p in trio) / 9
    assert h.losses[3] == pytest.approx(loss, rel=1e-13)


def test_fedasync_staleness_weight_tames_stale_updates(trio, clock):
    poly = fedasync(trio, profile=clock, lr=LR, updates=7, staleness="polynomial", a=1.0, theta0=THETA0)
    flat = fedasync(trio, profile=clock, lr=LR, updates=7, staleness="constant", theta0=THETA0)

    np.testing.assert_allclose(poly.metrics["alpha"], 0.5 / (1 + np.array([0, 0, 2, 1, 4, 1, 3])), rtol=1e-15)
    np.testing.assert_array_equal(flat.metrics["alpha"], 0.5)


# --- FedBuff -------------------------------------------------------------------------------------

def test_fedbuff_buffers_k_updates_by_hand(trio, clock):
    eta_s = 0.5
    h = fedbuff(trio, profile=clock, lr=LR, updates=4, buffer_size=2, server_lr=eta_s, theta0=THETA0)

    np.testing.assert_allclose(h.times, [0, 3.0, 4.5, 6.0, 7.5], rtol=1e-15)
    assert [s.tolist() for s in h.selected] == [[1, 1], [0, 1], [2, 1], [0, 1]]
    assert [s.tolist() for s in h.staleness] == [[0, 0], [1, 0], [2, 0], [2, 0]]
    # update 1: party 1's first two jobs both started from theta0 (the buffer was not full at 1.5 s)
    g1 = grad(trio[1], THETA0)
    th1 = THETA0 - eta_s * LR * (g1 + g1) / 2
    # update 2: party 0 from theta0 (staleness 1, weight 1/sqrt 2) and party 1 from th1 (fresh)
    th2 = th1 - eta_s * LR * (grad(trio[0], THETA0) / np.sqrt(2) + grad(trio[1], th1)) / 2
    np.testing.assert_allclose(h.thetas[1:3], [th1, th2], rtol=1e-13)
    np.testing.assert_array_equal(h.bytes_up, 2 * 16)
    np.testing.assert_array_equal(h.contributions, [2, 5, 1])


def test_fedbuff_one_worker_one_update_is_sequential_sgd(parties):
    clock = Clock(np.linspace(0.01, 0.08, len(parties)), latency=0.1)
    h = fedbuff(parties, profile=clock, lr=0.05, updates=12, buffer_size=1, concurrency=1, seed=4)

    chosen = np.array([int(s[0]) for s in h.selected])
    sizes = np.array([p.n_samples for p in parties])
    jobs = clock.job_time(chosen, samples=sizes[chosen], bytes_down=32, bytes_up=32)
    np.testing.assert_allclose(h.times[1:], np.cumsum(jobs), rtol=1e-13)
    assert all(s.tolist() == [0] for s in h.staleness)
    theta = np.zeros(4)
    for i in chosen:
        theta = theta - 0.05 * parties[i].gradient(theta)
    np.testing.assert_allclose(h.theta, theta, rtol=1e-12)
    assert len(set(chosen.tolist())) > 1                                    # the next worker is drawn


@pytest.mark.parametrize("run", [
    lambda ps, prof: fedasync(ps, profile=prof, lr=0.05, updates=15, batch_size=4, concurrency=5, seed=9),
    lambda ps, prof: fedbuff(ps, profile=prof, lr=0.05, updates=6, buffer_size=3, batch_size=4, concurrency=5,
                             seed=9),
    lambda ps, prof: sync_fedavg(ps, profile=prof, lr=0.05, rounds=4, deadline=0.4, partial_work=True,
                                 local_epochs=3, batch_size=4, seed=9),
], ids=["fedasync", "fedbuff", "sync-deadline"])
def test_same_seed_same_arrays(parties, run):
    profile = DeviceProfile(compute=Distribution("lognormal", median=3e-3, sigma=1.0),
                            latency=Distribution("exponential", mean=0.05), bandwidth=1e4,
                            jitter=Distribution("exponential", mean=0.02))

    a, b = run(parties, profile), run(parties, profile)

    for field in ("thetas", "losses", "times", "contributions", "bytes_up", "bytes_down"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert [s.tolist() for s in a.selected] == [s.tolist() for s in b.selected]
    assert [s.tolist() for s in a.staleness] == [s.tolist() for s in b.staleness]


def test_slow_parties_are_under_represented_in_fedasync(parties):
    clock = Clock(np.where(np.arange(len(parties)) < 4, 0.001, 0.05))
    h = fedasync(parties, profile=clock, lr=0.05, updates=60, seed=0)

    assert h.contributions[:4].min() > h.contributions[4:].max()
    assert h.contributions.sum() == 60 == h.rounds


# --- bad input -----------------------------------------------------------------------------------

def _bad(trio, clock):
    return [
        (lambda: Clock([0.1, 0.2], latency=[0.0, -0.5]), ValueError,
         "latency must hold non-negative finite numbers (seconds), got -0.5 for party 1"),
        (lambda: Clock([0.1, -1.0]), ValueError, "seconds_per_sample must hold non-negative", "got -1.0"),
        (lambda: Clock([0.1, 0.2], bandwidth=0.0), ValueError, "bandwidth must hold positive", "got 0.0"),
        (lambda: Clock([0.1, 0.2], latency=[0.1, 0.2, 0.3]), ValueError, "latency must be a number or an array",
         "(2)", "(3,)"),
        (lambda: Distribution("exponential", mean=-1.0), ValueError, "mean must be a positive finite number",
         "got -1.0"),
        (lambda: Distribution("pareto", minimum=1.0), TypeError, "'pareto' distribution takes minimum, alpha",
         "got minimum"),
        (lambda: Distribution("gamma", mean=1.0), ValueError, "kind must be one of", "got 'gamma'"),
        (lambda: DeviceProfile(compute=0.1, latency=-0.2), ValueError, "latency must be a non-negative",
         "got -0.2"),
        (lambda: DeviceProfile(compute=0.1, bandwidth=0), ValueError, "bandwidth must be a positive", "got 0"),
        (lambda: DeviceProfile(compute="fast"), TypeError, "compute must be a Distribution or a number",
         "got 'fast'"),
        (lambda: sync_fedavg(trio, profile=clock, lr=LR, rounds=1, deadline=-1.0), ValueError,
         "deadline must be a positive finite number", "got -1.0"),
        (lambda: sync_fedavg(trio, profile=clock, lr=LR, rounds=1, partial_work=True), ValueError,
         "partial_work=True needs a deadline", "got deadline=None"),
        (lambda: sync_fedavg(trio, profile="fast", lr=LR, rounds=1), TypeError,
         "profile must be a DeviceProfile or a Clock", "got str"),
        (lambda: sync_fedavg(trio, profile=Clock([0.1, 0.2]), lr=LR, rounds=1), ValueError,
         "profile must be a Clock for the 3 parties", "got one for 2"),
        (lambda: sync_fedavg(trio, profile=clock, lr=-0.1, rounds=1), ValueError, "lr must be a positive",
         "got -0.1"),
        (lambda: fedasync(trio, profile=clock, lr=LR, updates=1, mixing=1.5), ValueError,
         "mixing must be in (0, 1]", "got 1.5"),
        (lambda: fedasync(trio, profile=clock, lr=LR, updates=1, staleness="cubic"), ValueError,
         "staleness must be one of", "got 'cubic'"),
        (lambda: fedasync(trio, profile=clock, lr=LR, updates=-1), ValueError, "updates must be an integer in [0",
         "got -1"),
        (lambda: fedbuff(trio, profile=clock, lr=LR, updates=1, buffer_size=0), ValueError,
         "buffer_size must be an integer in [1", "got 0"),
        (lambda: fedbuff(trio, profile=clock, lr=LR, updates=1, concurrency=4), ValueError,
         "concurrency must be an integer in [1, 3]", "got 4"),
        (lambda: fedbuff(trio, profile=clock, lr=LR, updates=1, server_lr=0), ValueError,
         "server_lr must be a positive", "got 0.0"),
        (lambda: staleness_weight(-1), ValueError, "staleness must be non-negative finite numbers", "got -1.0"),
        (lambda: EventQueue().push(-0.5, 0), ValueError, "time must be a non-negative", "got -0.5"),
    ]


@pytest.mark.parametrize("k", range(23))
def test_bad_input_names_the_parameter(trio, clock, k):
    cases = _bad(trio, clock)
    assert len(cases) == 23
    call, exc, *fragments = cases[k]

    with pytest.raises(exc, match=".*".join(re.escape(f) for f in fragments)):
        call()


def test_a_clock_plan_checks_its_bytes_and_must_plan_trains_epochs(clock, trio):
    with pytest.raises(ValueError, match="bytes_down"):
        ClockPlan(clock, [2, 4, 3], local_epochs=1, bytes_down=-100, bytes_up=24)
    with pytest.raises(TypeError, match="bytes_up"):
        ClockPlan(clock, [2, 4, 3], local_epochs=1, bytes_down=16, bytes_up="abc")
    plan = ClockPlan(clock, [2, 4, 3], local_epochs=1, bytes_down=16, bytes_up=24, deadline=4.5)
    with pytest.raises(ValueError, match="stragglers plan must plan local_epochs=3 like train, got a plan for "
                                         "local_epochs=1"):
        fl.train(trio, lr=0.05, rounds=1, local_epochs=3, stragglers=plan)
