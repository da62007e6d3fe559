#pragma once
/// \file
/// \brief resblocks: residual networks on Eigen — the whole library in one include.

#include "resblocks/core/gemm.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/activation.hpp"
#include "resblocks/layers/gelu.hpp"
#include "resblocks/layers/identity.hpp"
#include "resblocks/layers/leaky_relu.hpp"
#include "resblocks/layers/linear.hpp"
#include "resblocks/layers/projection.hpp"
#include "resblocks/layers/relu.hpp"
#include "resblocks/layers/sigmoid.hpp"
#include "resblocks/layers/tanh.hpp"
#include "resblocks/blocks/repeat.hpp"
#include "resblocks/blocks/residual.hpp"
#include "resblocks/blocks/sequential.hpp"
#include "resblocks/testing/gradient_check.hpp"
