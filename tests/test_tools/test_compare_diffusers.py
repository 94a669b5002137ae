"""tools/compare_diffusers.py: tools take turns, and ms/step is the median of the repeats.

The real comparison needs diffusers' example script (not in this repository);
here a recording fake stands in for the processes, so the arithmetic and the
order of runs are checked exactly.
"""
from pathlib import Path

from tool_runner import load_tool


def test_runs_interleave_and_per_step_cost_is_the_median_over_repeats():
    compare = load_tool('compare_diffusers')
    # Wall seconds = start-up + steps * per-step cost; the second repeat of
    # "slow" hits a slow machine (an outlier the median must ignore).
    per_step = {'slow': [0.05, 0.50, 0.05], 'fast': [0.02, 0.02, 0.03]}
    calls = []

    def fake_run(argv, env, cwd):
        tool, steps, repeat = argv
        calls.append((tool, steps, repeat))
        return 3.0 + steps * per_step[tool][repeat], 400.0 + repeat, ''

    commands = {name: (lambda n, out, name=name: [name, n, int(out.name.split('_')[-1])])
                for name in ('slow', 'fast')}
    rows = compare.measure_interleaved(commands, (20, 220), 3, {}, Path('/nonexistent'),
                                       run=fake_run)
    assert calls == [(tool, n, r) for r in range(3) for tool in ('slow', 'fast')
                     for n in (20, 220)]
    slow, fast = rows
    assert slow['tool'] == 'slow' and round(slow['ms_per_step'], 6) == 50.0
    assert round(fast['ms_per_step'], 6) == 20.0
    assert [round(x, 6) for x in slow['ms_per_step_each_repeat']] == [50.0, 500.0, 50.0]
    assert slow['peak_rss_mb'] == 402.0  # the highest of all its runs
