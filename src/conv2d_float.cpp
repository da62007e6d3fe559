// resblocks_kernels: Conv2d<float> (see conv2d_instances.hpp).
#define RESBLOCKS_KERNEL_SCALAR float
#include "conv2d_instances.hpp"
