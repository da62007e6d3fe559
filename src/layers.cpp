// resblocks_kernels: Linear, BatchNorm2d and LayerNorm in float and double (see core/compiled_kernels.hpp).
#include "resblocks/layers/batch_norm2d.hpp"
#include "resblocks/layers/layer_norm.hpp"
#include "resblocks/layers/linear.hpp"

namespace resblocks {
template class Linear<float>;
template class Linear<double>;
template class BatchNorm2d<float>;
template class BatchNorm2d<double>;
template class LayerNorm<float>;
template class LayerNorm<double>;
}  // namespace resblocks
