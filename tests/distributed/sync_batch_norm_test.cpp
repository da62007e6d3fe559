// SyncBatchNorm (sync_batch_norm) under mpirun: each rank's slice of a batch through a synchronised
// BatchNorm2d equals the same slice of one BatchNorm2d over the whole batch, forward and backward;
// the sharded evaluation's counts add up over uneven shards.
#include "support/catch.hpp"

#include <resblocks/blocks/sequential.hpp>
#include <resblocks/core/random.hpp>
#include <resblocks/distributed/communicator.hpp>
#include <resblocks/distributed/sync_batch_norm.hpp>
#include <resblocks/io/batch_loader.hpp>
#include <resblocks/io/image_dataset.hpp>
#include <resblocks/layers/batch_norm2d.hpp>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

using namespace resblocks;

TEST_CASE("sync_batch_norm: each rank's slice equals BatchNorm2d on the concatenated batch", "[mpi][sync_batch_norm]") {
  const Communicator comm;
  const Index channels = 3, per_rank = 7 + comm.rank();  // uneven slices: the joint count is summed, not assumed
  Index total = 0, first = 0;
  for (int r = 0; r < comm.size(); ++r) {
    if (r == comm.rank()) first = total;
    total += 7 + r;
  }
  Generator g(11);
  Eigen::MatrixXd x(channels, total), dy(channels, total);
  fill_uniform(x, 2.0, g);
  x.row(1).array() += 5.0;  // a mean far from zero: the variance must not come from Σx² - n·mean²
  fill_uniform(dy, 1.0, g);

  BatchNorm2d<double> whole(channels);
  whole.weight() << 1.5, 0.5, -1.0;
  whole.bias() << 0.1, -0.2, 0.3;
  BatchNorm2d<double> part = whole;
  Sequential<BatchNorm2d<double>> net(part);
  REQUIRE(sync_batch_norm(net, comm) == 1);
  auto& bn = net.get<0>();
  REQUIRE(bn.synchronized());

  const Eigen::MatrixXd y_whole = whole.forward(x);
  const Eigen::MatrixXd dx_whole = whole.backward(dy);
  const Eigen::MatrixXd x_part = x.middleCols(first, per_rank);
  const Eigen::MatrixXd y = bn.forward(x_part);
  const Eigen::MatrixXd dx = bn.backward(dy.middleCols(first, per_rank));
  REQUIRE(y.isApprox(y_whole.middleCols(first, per_rank), 1e-12));
  REQUIRE(dx.isApprox(dx_whole.middleCols(first, per_rank), 1e-12));
  // Parameter gradients stay per rank; their sum is the whole batch's.
  Eigen::VectorXd dw = bn.weight_grad(), db = bn.bias_grad();
  comm.all_reduce_sum(std::span<double>(dw.data(), 3));
  comm.all_reduce_sum(std::span<double>(db.data(), 3));
  REQUIRE(dw.isApprox(whole.weight_grad(), 1e-12));
  REQUIRE(db.isApprox(whole.bias_grad(), 1e-12));
  // Running statistics from the joint batch (unbiased variance with the joint count).
  REQUIRE(bn.running_mean().isApprox(whole.running_mean(), 1e-12));
  REQUIRE(bn.running_var().isApprox(whole.running_var(), 1e-12));

  // Without synchronisation (the default, as DDP) a rank normalises with its own statistics.
  REQUIRE(sync_batch_norm(net, comm, false) == 1);
  REQUIRE(!bn.synchronized());
  if (comm.size() > 1) REQUIRE(!bn.forward(x_part).isApprox(y_whole.middleCols(first, per_rank), 1e-6));
}

TEST_CASE("Sharded evaluation: uneven shards cover the test set once, the counts add up", "[mpi][shard]") {
  const Communicator comm;
  const Index n = 10;  // 3 ranks: 4, 3, 3
  std::vector<unsigned char> pixels(static_cast<std::size_t>(n * 4), 1);
  std::vector<int> labels(static_cast<std::size_t>(n));
  std::iota(labels.begin(), labels.end(), 0);
  const ImageDataset data(1, 2, 2, pixels, labels);
  BatchLoader<float> loader(data, {.batch_size = 3,
                                   .shuffle = true,
                                   .seed = 4,
                                   .rank = comm.rank(),
                                   .world_size = comm.size(),
                                   .pad_shards = false});
  std::int64_t counts[2] = {0, 0};  // samples, Σ label
  while (loader.next())
    for (const int label : loader.labels()) {
      ++counts[0];
      counts[1] += label;
    }
  comm.all_reduce_sum(std::span<std::int64_t>(counts, 2));
  REQUIRE(counts[0] == n);
  REQUIRE(counts[1] == n * (n - 1) / 2);
}
