#pragma once
/// \file
/// \brief sync_batch_norm(): turns every BatchNorm2d of a network into a SyncBatchNorm over the
/// ranks of a Communicator (needs MPI: link resblocks::mpi).

#include "resblocks/core/layer.hpp"
#include "resblocks/distributed/communicator.hpp"
#include "resblocks/layers/batch_norm2d.hpp"

#include <cstddef>
#include <span>
#include <type_traits>

namespace resblocks {

namespace detail {
template <class S, int C>
std::true_type is_batch_norm2d(const BatchNorm2d<S, C>*);
std::false_type is_batch_norm2d(const void*);
}  // namespace detail

/// Makes every BatchNorm2d inside `net` (found through for_each_layer) normalise with the statistics
/// of all ranks' batches together, as PyTorch's `SyncBatchNorm.convert_sync_batchnorm`: two small
/// all-reduces per layer in forward, one in backward. With `enable = false` they go back to per-rank
/// statistics (the default, as DistributedDataParallel). Returns the number of layers changed.
/// All ranks must run the same layers in the same order (DataParallel checks the models match).
/// \param net the network whose BatchNorm2d layers change
/// \param comm the ranks whose statistics are pooled; copied into each layer
/// \param enable true to pool the statistics, false to go back to per-rank statistics
/// \returns the number of BatchNorm2d layers changed
template <class Net>
std::size_t sync_batch_norm(Net& net, const Communicator& comm, bool enable = true) {
  std::size_t changed = 0;
  for_each_leaf(net, [&](auto& layer) {
    if constexpr (decltype(detail::is_batch_norm2d(&layer))::value) {
      if (enable)
        layer.set_statistics_reducer([comm](std::span<double> sums) { comm.all_reduce_sum(sums); });
      else
        layer.set_statistics_reducer({});
      ++changed;
    }
  });
  return changed;
}

}  // namespace resblocks
