// A rank that fails must end the whole job, with its message, within seconds: the last rank throws
// (as a missing file on one machine would) at step 3, while the other ranks wait in an all-reduce
// that can never complete. Run by distributed/expect_abort.cmake under mpirun.
#include <resblocks/distributed/communicator.hpp>
#include <resblocks/distributed/mpi_environment.hpp>

#include <cstdio>
#include <stdexcept>

int main(int argc, char** argv) {
  resblocks::MpiEnvironment env(argc, argv);
  return env.run("mpi_fault", [&] {
    const resblocks::Communicator comm = env.world();
    for (int step = 0; step < 1000000; ++step) {
      if (comm.rank() == comm.size() - 1 && step == 3)
        throw std::runtime_error("cannot open data/missing-shard.idx (rank-local failure at step 3)");
      double loss = 1.0;
      comm.all_reduce_sum(std::span<double>(&loss, 1));
    }
    std::puts("mpi_fault: finished (the failure was missed)");
    return 0;
  });
}
