"""The scheduler under a fake clock: TTFT, ITL, batching, queueing, cancellation, faults."""

from __future__ import annotations

import itertools

import pytest

from mock_llm.scheduler import DONE, RUNNING, WAITING, Scheduler
from tests.unit.mock_llm.conftest import new_seq, run_until, settings

pytestmark = pytest.mark.timeout(10)
MS = 0.001


def test_hosted_single_stream_ttft_and_itl_exact() -> None:
    sched = Scheduler(settings(ttft_ms=100.0, itl_ms=20.0))
    seq, sink = new_seq(out_tokens=5)
    sched.submit(seq, 0.0)
    run_until(sched, 10.0)
    times = [e[0] for e in sink.emits]
    assert times == pytest.approx([0.100, 0.120, 0.140, 0.160, 0.180], abs=1 * MS)
    assert sink.tokens == 5 and sink.emits[-1][3]
    assert sched.n_running == 0 and seq.state == DONE


def test_hosted_zero_latency_emits_everything_at_once() -> None:
    sched = Scheduler(settings(ttft_ms=0.0, itl_ms=0.0))
    seq, sink = new_seq(out_tokens=50)
    sched.submit(seq, 1.0)
    run_until(sched, 10.0)
    assert sink.emits == [(1.0, 0, 50, True)]


@pytest.mark.parametrize("mode", ["hosted", "engine"])
def test_max_num_seqs_8_with_16_requests_second_eight_wait_one_generation(mode: str) -> None:
    s = settings(
        mode=mode, ttft_ms=100.0, itl_ms=20.0, step_base_ms=20.0, max_num_seqs=8, output_tokens=50
    )
    sched = Scheduler(s)
    sinks = []
    for _ in range(16):
        seq, sink = new_seq(out_tokens=50)
        sched.submit(seq, 0.0)
        sinks.append(sink)
    assert sched.n_running == 8 and sched.n_waiting == 8
    run_until(sched, 60.0)
    first = [k.first_at for k in sinks[:8]]
    second = [k.first_at for k in sinks[8:]]
    generation = sinks[0].done_at - 0.0  # the first eight's whole request time
    for a, b in zip(first, second, strict=True):
        assert b - a == pytest.approx(generation, abs=2 * MS)
    # hosted: TTFT 100 + 49 x 20 ms; engine: 1 prefill step + 49 decode steps of 20 ms
    expected = 1.080 if mode == "hosted" else 1.000
    assert generation == pytest.approx(expected, abs=2 * MS)
    assert all(k.tokens == 50 for k in sinks)
    assert sched.n_running == 0 and sched.n_waiting == 0


def test_engine_itl_grows_with_running_sequences() -> None:
    s = settings(mode="engine", step_base_ms=10.0, step_per_seq_ms=0.5, output_tokens=20)

    def itl_with(n: int) -> float:
        sched = Scheduler(s)
        sinks = []
        for _ in range(n):
            seq, sink = new_seq(out_tokens=20, prompt_tokens=1)
            sched.submit(seq, 0.0)
            sinks.append(sink)
        run_until(sched, 60.0)
        times = [e[0] for e in sinks[0].emits]
        return (times[-1] - times[1]) / (len(times) - 2)

    assert itl_with(1) == pytest.approx(0.0105, rel=1e-6)
    assert itl_with(40) == pytest.approx(0.030, rel=1e-6)


def test_engine_step_cost_grows_with_the_context_of_the_decoding_sequences() -> None:
    # 10 ms + 0.001 ms per context token: a 1000-token prompt makes every decode step 1 ms longer,
    # and each generated token adds to the context of the next step
    s = settings(mode="engine", step_base_ms=10.0, step_per_kv_token_ms=0.001, output_tokens=4)
    sched = Scheduler(s)
    seq, sink = new_seq(out_tokens=4, prompt_tokens=1000)
    sched.submit(seq, 0.0)
    run_until(sched, 10.0)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(sink.emits)]
    # the prefill step decodes nothing (10 ms); decode steps see 1001, 1002, 1003 context tokens
    assert sink.first_at == pytest.approx(0.010, abs=1e-9)
    assert gaps == pytest.approx([0.011001, 0.011002, 0.011003], abs=1e-9)


def test_engine_roofline_makes_busy_steps_compute_bound() -> None:
    """Memory-bound 10 ms + 0.01 ms per decode; compute-bound 0.1 ms per token processed.

    A lone stream's decode steps stay at 10.01 ms; a 300-token prompt's prefill step is compute
    bound (0.1 x 300 = 30 ms, not 10 ms); 150 streams decoding together take 0.1 x 150 = 15 ms
    per step (memory-bound would be 11.5 ms), 149 take 14.9 ms."""
    s = settings(
        mode="engine", step_base_ms=10.0, step_per_seq_ms=0.01, step_compute_per_token_ms=0.1
    )
    sched = Scheduler(s)
    seq, sink = new_seq(out_tokens=3, prompt_tokens=300)
    sched.submit(seq, 0.0)
    run_until(sched, 10.0)
    assert [e[0] for e in sink.emits] == pytest.approx([0.030, 0.04001, 0.05002], abs=1e-9)

    sched = Scheduler(s)
    sinks = []
    for _ in range(150):
        seq, sink = new_seq(out_tokens=4, prompt_tokens=1)
        sched.submit(seq, 0.0)
        sinks.append(sink)
    run_until(sched, 10.0)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(sinks[-1].emits)]
    # the first arrival started a step alone, so it is one step ahead and gone for the last one
    assert gaps == pytest.approx([0.015, 0.015, 0.0149], abs=1e-9)


def test_engine_prefill_first_decode_pause_carries_no_context_cost() -> None:
    s = settings(
        mode="engine",
        step_base_ms=10.0,
        step_per_kv_token_ms=0.01,
        prefill_policy="prefill_first",
        output_tokens=50,
    )
    sched = Scheduler(s)
    a, sink_a = new_seq(out_tokens=50, prompt_tokens=100)
    sched.submit(a, 0.0)
    run_until(sched, 0.0155)  # a's first token at 10 ms; its first decode step is in flight
    b, sink_b = new_seq(out_tokens=2, prompt_tokens=100)
    sched.submit(b, 0.0155)
    run_until(sched, 10.0)
    # a's decode step: 10 + 0.01 x 101 = 11.01 ms (ends at 21.01); then b's prefill step alone,
    # with a's decode paused: 10 ms, no context cost (ends at 31.01)
    assert sink_b.first_at == pytest.approx(0.03101, abs=1e-9)
    assert sink_a.emits[1][0] == pytest.approx(0.02101, abs=1e-9)


def test_engine_itl_histogram_holds_every_gap_of_every_stream() -> None:
    # staggered arrivals: the streams of one step have different gaps (one just prefilled)
    s = settings(mode="engine", step_base_ms=10.0, step_per_seq_ms=0.5, output_tokens=6)
    sched = Scheduler(s)
    sinks = []
    for i in range(5):
        seq, sink = new_seq(out_tokens=6, prompt_tokens=1)
        sched.submit(seq, 0.013 * i)
        run_until(sched, 0.013 * i)
        sinks.append(sink)
    run_until(sched, 10.0)
    gaps = [b[0] - a[0] for k in sinks for a, b in itertools.pairwise(k.emits)]
    assert len({round(g, 9) for g in gaps}) > 1
    assert sched.stats.itl_s.total == len(gaps) == 5 * 5
    assert sched.stats.itl_s.sum == pytest.approx(sum(gaps), abs=1e-9)
    assert sched.stats.generation_tokens == 5 * 6


def test_engine_prefill_costs_step_time_and_is_chunked() -> None:
    s = settings(
        mode="engine",
        step_base_ms=10.0,
        step_per_prefill_token_ms=0.01,
        max_batched_tokens=1000,
        output_tokens=3,
    )
    sched = Scheduler(s)
    seq, sink = new_seq(out_tokens=3, prompt_tokens=2500)
    sched.submit(seq, 0.0)
    run_until(sched, 10.0)
    # prefill in chunks 1000 + 1000 + 500: steps of 20, 20, 15 ms; then 2 decode steps of 10 ms
    assert [e[0] for e in sink.emits] == pytest.approx([0.055, 0.065, 0.075], abs=1e-9)


def test_engine_new_arrival_waits_for_the_step_boundary() -> None:
    s = settings(mode="engine", step_base_ms=10.0, output_tokens=10)
    sched = Scheduler(s)
    a, _ = new_seq(out_tokens=10, prompt_tokens=1)
    sched.submit(a, 0.0)
    run_until(sched, 0.025)  # steps end at 10, 20 ms; the third is in flight until 30 ms
    b, sink_b = new_seq(out_tokens=2, prompt_tokens=1)
    sched.submit(b, 0.025)
    run_until(sched, 10.0)
    assert sink_b.first_at == pytest.approx(0.040)  # admitted at 30, prefilled by 40 ms


def test_engine_frontend_rate_queues_tokens_and_frees_the_slot_at_the_last_computed_one() -> None:
    """Steps of 5 ms; the frontend sends 100 tokens/s (one per 10 ms) in the order the engine
    computed them. A (3 tokens) is computed at 5, 10, 15 ms and reaches the client at 15, 25,
    35 ms. With one slot, B starts when A's last token is computed (15 ms), not when it is sent:
    B's first token is computed at 20 ms and sent after A's, at 45 ms."""
    s = settings(mode="engine", step_base_ms=5.0, frontend_tokens_per_s=100.0, max_num_seqs=1)
    sched = Scheduler(s)
    a, sink_a = new_seq(out_tokens=3, prompt_tokens=1)
    b, sink_b = new_seq(out_tokens=2, prompt_tokens=1)
    sched.submit(a, 0.0)
    sched.submit(b, 0.0)
    run_until(sched, 10.0)
    assert [e[0] for e in sink_a.emits] == pytest.approx([0.015, 0.025, 0.035], abs=1e-9)
    assert [e[0] for e in sink_b.emits] == pytest.approx([0.045, 0.055], abs=1e-9)
    assert sink_a.emits[-1][3] and sink_b.emits[-1][3]
    assert [e[1] for e in sink_a.emits] == [0, 1, 2]  # each token sent once, in order
    # the metrics see what the client sees: TTFT 15 and 45 ms, 3 gaps of 10 ms
    assert sched.stats.ttft_s.total == 2 and sched.stats.ttft_s.sum == pytest.approx(0.060)
    assert sched.stats.itl_s.total == 3 and sched.stats.itl_s.sum == pytest.approx(0.030)


def test_engine_frontend_queue_drops_the_tokens_of_a_client_that_left() -> None:
    s = settings(mode="engine", step_base_ms=5.0, frontend_tokens_per_s=100.0)
    sched = Scheduler(s)
    a, sink_a = new_seq(out_tokens=3, prompt_tokens=1)
    sched.submit(a, 0.0)
    run_until(sched, 0.020)  # all 3 computed by 15 ms; 1 sent (15 ms), 2 queued
    sched.cancel(a, 0.020)
    run_until(sched, 10.0)
    assert sink_a.tokens == 1 and sched.next_deadline() is None


def test_cancel_frees_the_slot_at_once() -> None:
    sched = Scheduler(settings(ttft_ms=100.0, itl_ms=20.0, max_num_seqs=1))
    a, _ = new_seq(out_tokens=50)
    b, sink_b = new_seq(out_tokens=2)
    sched.submit(a, 0.0)
    sched.submit(b, 0.0)
    assert b.state == WAITING
    run_until(sched, 0.150)
    sched.cancel(a, 0.150)
    assert a.state == DONE and b.state == RUNNING
    run_until(sched, 10.0)
    assert sink_b.first_at == pytest.approx(0.250, abs=1 * MS)
    assert sched.stats.disconnects == 1


def test_cancel_while_waiting_leaves_the_queue() -> None:
    sched = Scheduler(settings(max_num_seqs=1))
    a, _ = new_seq()
    b, sink_b = new_seq()
    sched.submit(a, 0.0)
    sched.submit(b, 0.0)
    sched.cancel(b, 0.01)
    assert sched.n_waiting == 0
    run_until(sched, 10.0)
    assert sink_b.emits == []


def test_sink_gone_drops_the_sequence() -> None:
    sched = Scheduler(settings(ttft_ms=10.0, itl_ms=10.0))
    seq, sink = new_seq(out_tokens=50)
    sink.alive = False
    sched.submit(seq, 0.0)
    run_until(sched, 10.0)
    assert len(sink.emits) == 1 and sched.n_running == 0


def test_waiting_queue_cap() -> None:
    sched = Scheduler(settings(max_num_seqs=1, max_waiting=2))
    for _ in range(3):
        assert sched.can_accept()
        sched.submit(new_seq()[0], 0.0)
    assert not sched.can_accept()


@pytest.mark.parametrize("mode", ["hosted", "engine"])
def test_stall_after_k_tokens(mode: str) -> None:
    s = settings(mode=mode, ttft_ms=10.0, itl_ms=10.0, step_base_ms=10.0)
    sched = Scheduler(s)
    seq, sink = new_seq(out_tokens=5, prompt_tokens=1)
    seq.stall_at, seq.stall_s = 2, 0.5
    sched.submit(seq, 0.0)
    run_until(sched, 10.0)
    times = [e[0] for e in sink.emits]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[1] == pytest.approx(0.510, abs=1 * MS)
    assert gaps[0] == pytest.approx(0.010, abs=1 * MS)


@pytest.mark.parametrize("mode", ["hosted", "engine"])
def test_slow_first_token(mode: str) -> None:
    s = settings(mode=mode, ttft_ms=10.0, itl_ms=10.0, step_base_ms=10.0)
    sched = Scheduler(s)
    seq, sink = new_seq(out_tokens=3, prompt_tokens=1)
    seq.extra_ttft_s = 1.0
    sched.submit(seq, 0.0)
    run_until(sched, 10.0)
    assert sink.first_at == pytest.approx(1.010, abs=1 * MS)


def test_seeded_jitter_is_reproducible() -> None:
    s = settings(ttft_ms=100.0, ttft_sigma=0.5, itl_ms=10.0, itl_cv=0.5)

    def times(seed_rng: int) -> list[float]:
        import random

        sched = Scheduler(s)
        seq, sink = new_seq(out_tokens=30)
        seq.rng = random.Random(seed_rng)
        sched.submit(seq, 0.0)
        run_until(sched, 100.0)
        return [e[0] for e in sink.emits]

    assert times(7) == times(7)
    assert times(7) != times(8)
    gaps = [b - a for a, b in itertools.pairwise(times(7))]
    assert max(gaps) > 0.012 and min(gaps) < 0.008  # really jittered


def test_metrics_count_what_was_sent() -> None:
    sched = Scheduler(settings(ttft_ms=5.0, itl_ms=5.0))
    for _ in range(3):
        sched.submit(new_seq(out_tokens=7, prompt_tokens=11)[0], 0.0)
    run_until(sched, 10.0)
    st = sched.stats
    assert st.generation_tokens == 21 and st.prompt_tokens == 33
    assert st.ttft_s.total == 3 and st.itl_s.total == 18
    assert st.requests_finished == {"stop": 3}


def test_engine_frontend_overhead_adds_to_ttft_only() -> None:
    s = settings(mode="engine", step_base_ms=10.0, ttft_overhead_ms=5.0, output_tokens=3)
    sched = Scheduler(s)
    seq, sink = new_seq(out_tokens=3, prompt_tokens=1)
    sched.submit(seq, 0.0)
    run_until(sched, 10.0)
    assert [e[0] for e in sink.emits] == pytest.approx([0.015, 0.025, 0.035])


@pytest.mark.parametrize("policy", ["mixed", "prefill_first"])
def test_engine_prefill_budget_shared_with_decode_or_not(policy: str) -> None:
    """A running stream A and a 300-token prompt B under a budget of 101 tokens per step.

    mixed: A's decode token takes 1 of the budget, B is prefilled 100 per step (3 steps of
    10 + 1.0 ms) and A keeps emitting one token per step. prefill_first: B's steps carry only
    prefill (101 + 101 + 98 tokens) and A emits nothing until B's prompt is done.
    """
    s = settings(
        mode="engine",
        step_base_ms=10.0,
        step_per_prefill_token_ms=0.01,
        max_batched_tokens=101,
        prefill_policy=policy,
    )
    sched = Scheduler(s)
    a, sink_a = new_seq(out_tokens=20, prompt_tokens=1)
    sched.submit(a, 0.0)  # step 1: A's prefill, 10.01 ms
    b, sink_b = new_seq(out_tokens=2, prompt_tokens=300)
    sched.submit(b, 0.005)  # waits for the step boundary at 10.01 ms
    run_until(sched, 10.0)
    a_times = [e[0] for e in sink_a.emits]
    if policy == "mixed":
        assert sink_b.first_at == pytest.approx(0.01001 + 3 * 0.011, abs=1e-9)
        assert a_times[:4] == pytest.approx([0.01001, 0.02101, 0.03201, 0.04301], abs=1e-9)
    else:
        assert sink_b.first_at == pytest.approx(0.01001 + 0.01101 + 0.01101 + 0.01098, abs=1e-9)
        # A's second token comes one decode step (10 ms) after B's prompt is done
        assert a_times[:2] == pytest.approx([0.01001, 0.04301 + 0.010], abs=1e-9)
    assert sink_a.tokens == 20 and sink_b.tokens == 2


def test_engine_prefill_first_keeps_a_burst_in_one_wave() -> None:
    """prefill_first: users that arrive together are prefilled before anyone decodes, so they
    all get the same second-token time (the waves of a burst stay together)."""
    s = settings(
        mode="engine",
        step_base_ms=10.0,
        step_per_prefill_token_ms=0.01,
        max_batched_tokens=250,
        prefill_policy="prefill_first",
    )
    sched = Scheduler(s)
    sinks = []
    for _ in range(4):
        seq, sink = new_seq(out_tokens=3, prompt_tokens=100)
        sched.submit(seq, 0.0)
        sinks.append(sink)
    run_until(sched, 10.0)
    firsts = [k.first_at for k in sinks]
    seconds = [k.emits[1][0] for k in sinks]
    # the first arrival starts a step alone (100 tokens, 11 ms); the other 300 tokens go in steps
    # of 250 and 50 tokens (12.5 and 10.5 ms); nobody decodes until all four are prefilled
    assert firsts == pytest.approx([0.011, 0.0235, 0.0235, 0.034], abs=1e-9)
    assert seconds == pytest.approx([0.044] * 4, abs=1e-9)
