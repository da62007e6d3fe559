// resblocks_kernels: Conv2d<double> (see conv2d_instances.hpp).
#define RESBLOCKS_KERNEL_SCALAR double
#include "conv2d_instances.hpp"
