// resblocks_kernels: the GEMM driver's float and double instances (see core/compiled_kernels.hpp).
#include "resblocks/core/gemm.hpp"
#include "resblocks/core/compiled_kernels.hpp"

/// The instruction-set tag the headers reference in the compiled-kernels mode.
extern "C" const int RESBLOCKS_KERNELS_ISA_TAG = 1;

namespace resblocks::detail {
#define RESBLOCKS_INSTANTIATE_GEMM(S, TA, TB)                                                                         \
  template void gemm_accumulate<TA, TB, S>(Index, Index, Index, Operand<S>, Operand<S>, S*, Index, BlockFn, BlockFn); \
  template void gemm_dynamic<TA, TB, S>(MatrixRef<S>, ConstMatrixRef<S>, ConstMatrixRef<S>, BlockFn, BlockFn);
#define RESBLOCKS_INSTANTIATE_GEMM_OF(S)      \
  RESBLOCKS_INSTANTIATE_GEMM(S, false, false) \
  RESBLOCKS_INSTANTIATE_GEMM(S, false, true)  \
  RESBLOCKS_INSTANTIATE_GEMM(S, true, false)  \
  RESBLOCKS_INSTANTIATE_GEMM(S, true, true)
RESBLOCKS_INSTANTIATE_GEMM_OF(float)
RESBLOCKS_INSTANTIATE_GEMM_OF(double)
}  // namespace resblocks::detail
