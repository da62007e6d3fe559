#pragma once
/// \file
/// \brief The timed loop of the step benchmarks, after untimed warm-up steps.

#include <benchmark/benchmark.h>

namespace resblocks_bench {

/// Runs `step` twice untimed, then in the benchmark's timed loop. Google Benchmark calls a benchmark
/// function afresh for every run (its warm-up phase and its iteration estimate included), so a network
/// built in the function is cold when its loop starts: the first step sizes every buffer and page-faults
/// it in (BM_CifarResNetTrain/20/128 on 2 threads: 91.8-92.5 ms timed with that step inside, 89.7-91.2
/// without).
template <class Step>
void time_steps(benchmark::State& state, Step&& step) {
  for (int i = 0; i < 2; ++i) step();
  for (auto _ : state) {
    step();
    benchmark::ClobberMemory();
  }
}

}  // namespace resblocks_bench
