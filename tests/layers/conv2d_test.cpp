#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

#include <string>
#include <vector>

using namespace resblocks;

namespace {
// Direct convolution from the definition, PyTorch's weight order (o, ci, kh, kw), image layout.
template <class Conv>
Eigen::MatrixXd reference(const Conv& conv, const Eigen::MatrixXd& x, ImageSize in) {
  const auto& o = conv.options();
  const Index k = conv.kernel_size(), cin = conv.in_features(), cout = conv.out_features();
  const Index cg = cin / o.groups, og = cout / o.groups;
  const Index reach = o.dilation * (k - 1) + 1;
  const Index ho = (in.height + 2 * o.padding - reach) / o.stride + 1,
              wo = (in.width + 2 * o.padding - reach) / o.stride + 1;
  const Index n = x.cols() / in.area();
  Eigen::MatrixXd y = Eigen::MatrixXd::Zero(cout, n * ho * wo);
  for (Index s = 0; s < n; ++s)
    for (Index oc = 0; oc < cout; ++oc)
      for (Index h = 0; h < ho; ++h)
        for (Index w = 0; w < wo; ++w) {
          double acc = conv.has_bias() ? double(conv.bias()(oc)) : 0.0;
          const Index g = oc / og;
          for (Index ci = 0; ci < cg; ++ci)
            for (Index kh = 0; kh < k; ++kh)
              for (Index kw = 0; kw < k; ++kw) {
                const Index hi = h * o.stride - o.padding + kh * o.dilation,
                            wi = w * o.stride - o.padding + kw * o.dilation;
                if (hi < 0 || hi >= in.height || wi < 0 || wi >= in.width) continue;
                acc += double(conv.weight()(oc, kw + k * (kh + k * ci))) *
                       x(g * cg + ci, s * in.area() + hi * in.width + wi);
              }
          y(oc, s * ho * wo + h * wo + w) = acc;
        }
  return y;
}

// dL/dx and dL/dW from the definition, for a given dL/dy.
template <class Conv>
void reference_backward(const Conv& conv, const Eigen::MatrixXd& x, const Eigen::MatrixXd& dy, ImageSize in,
                        Eigen::MatrixXd& dx, Eigen::MatrixXd& dw) {
  const auto& o = conv.options();
  const Index k = conv.kernel_size(), cin = conv.in_features(), cout = conv.out_features();
  const Index cg = cin / o.groups, og = cout / o.groups;
  const Index reach = o.dilation * (k - 1) + 1;
  const Index ho = (in.height + 2 * o.padding - reach) / o.stride + 1,
              wo = (in.width + 2 * o.padding - reach) / o.stride + 1;
  const Index n = x.cols() / in.area();
  dx = Eigen::MatrixXd::Zero(cin, x.cols());
  dw = Eigen::MatrixXd::Zero(cout, cg * k * k);
  for (Index s = 0; s < n; ++s)
    for (Index oc = 0; oc < cout; ++oc)
      for (Index h = 0; h < ho; ++h)
        for (Index w = 0; w < wo; ++w) {
          const double g_out = dy(oc, s * ho * wo + h * wo + w);
          const Index g = oc / og;
          for (Index ci = 0; ci < cg; ++ci)
            for (Index kh = 0; kh < k; ++kh)
              for (Index kw = 0; kw < k; ++kw) {
                const Index hi = h * o.stride - o.padding + kh * o.dilation,
                            wi = w * o.stride - o.padding + kw * o.dilation;
                if (hi < 0 || hi >= in.height || wi < 0 || wi >= in.width) continue;
                const Index col = s * in.area() + hi * in.width + wi;
                dw(oc, kw + k * (kh + k * ci)) += g_out * x(g * cg + ci, col);
                dx(g * cg + ci, col) += g_out * double(conv.weight()(oc, kw + k * (kh + k * ci)));
              }
        }
}

struct Case {
  Index cin, cout, k;
  Conv2dOptions opt;
  ImageSize size;
  Index n;
};

std::string describe(const Case& c) {
  return std::to_string(c.cin) + "->" + std::to_string(c.cout) + " k" + std::to_string(c.k) + " s" +
         std::to_string(c.opt.stride) + " p" + std::to_string(c.opt.padding) + " d" + std::to_string(c.opt.dilation) +
         " g" + std::to_string(c.opt.groups) + (c.opt.bias ? " bias " : " ") + c.size.str() + " n" +
         std::to_string(c.n);
}

const Case k_cases[] = {
    {3, 4, 3, {.stride = 1, .padding = 1}, {5, 6}, 2},
    {3, 5, 3, {.stride = 2, .padding = 1, .bias = false}, {7, 5}, 2},
    {4, 6, 3, {.stride = 1, .padding = 0, .groups = 2}, {5, 5}, 1},
    {4, 4, 3, {.stride = 2, .padding = 1, .groups = 4, .bias = false}, {6, 7}, 2},  // depthwise
    {2, 3, 3, {.stride = 1, .padding = 2, .dilation = 2}, {6, 5}, 1},
    {3, 4, 1, {.stride = 1}, {4, 3}, 3},                 // pointwise: one GEMM
    {3, 4, 1, {.stride = 2, .bias = false}, {5, 5}, 2},  // projection shortcut
    {2, 3, 5, {.stride = 3, .padding = 2}, {9, 8}, 1},
    {2, 2, 2, {.stride = 1, .padding = 0}, {3, 4}, 2},  // even kernel
    {3, 2, 1, {.stride = 1, .padding = 1}, {3, 3}, 2},  // padding > d(k-1): scatter
};

// Large enough to run in two parts side by side (and, with 2 threads, on both cores).
const Case k_large_cases[] = {
    {16, 16, 3, {.padding = 1, .bias = false}, {8, 8}, 6},  // gather backward
    {16, 32, 3, {.stride = 2, .padding = 1}, {9, 8}, 5},    // scatter backward
    {16, 32, 1, {.stride = 2, .bias = false}, {8, 8}, 9},   // strided 1x1
    {32, 32, 1, {}, {8, 8}, 4},                             // pointwise: one GEMM
    {32, 32, 3, {.padding = 1, .groups = 4}, {8, 8}, 3},
    // 32 and 64 channels: the implicit GEMM (patches read while packing), forward and gather backward.
    {32, 32, 3, {.padding = 1, .bias = false}, {7, 6}, 3},
    {32, 64, 3, {.padding = 2, .dilation = 2}, {6, 7}, 2},
    {64, 32, 3, {.stride = 2, .padding = 1}, {7, 7}, 2},  // implicit forward, scatter backward
};
}  // namespace

TEST_CASE("Conv2d: forward matches the direct convolution (strides, padding, dilation, groups)", "[conv2d]") {
  for (const Case& c : k_cases) {
    INFO(describe(c));
    Conv2d<double> conv(c.cin, c.cout, c.k, c.opt);
    conv.set_image_size(c.size);
    const auto x = rbtest::random_batch<Eigen::MatrixXd>(c.cin, c.n * c.size.area(), 3);
    const Eigen::MatrixXd expected = reference(conv, x, c.size);
    REQUIRE(rbtest::rel_diff(conv.forward(x), expected) < 1e-13);
    conv.set_max_chunk_positions(7);  // many chunks, the last one partial
    REQUIRE(rbtest::rel_diff(conv.forward(x), expected) < 1e-13);
  }
}

namespace {
struct Step {
  Eigen::MatrixXd x, dy, dx, dw;  ///< random input and output gradient, the definition's gradients
};
/// One forward and backward of a fresh `conv` (set up for case c) on random x and dy (seeds `seed`,
/// `seed` + 1), compared with the definition.
Step check_against_definition(Conv2d<double>& conv, const Case& c, std::uint64_t seed) {
  const ImageSize out = conv.set_image_size(c.size);
  Step s{rbtest::random_batch<Eigen::MatrixXd>(c.cin, c.n * c.size.area(), seed),
         rbtest::random_batch<Eigen::MatrixXd>(c.cout, c.n * out.area(), seed + 1),
         {},
         {}};
  reference_backward(conv, s.x, s.dy, c.size, s.dx, s.dw);
  REQUIRE(rbtest::rel_diff(conv.forward(s.x), reference(conv, s.x, c.size)) < 1e-13);
  REQUIRE(rbtest::rel_diff(conv.backward(s.dy), s.dx) < 1e-13);
  REQUIRE(rbtest::rel_diff(conv.weight_grad(), s.dw) < 1e-13);
  if (conv.has_bias()) REQUIRE(rbtest::rel_diff(conv.bias_grad(), s.dy.rowwise().sum()) < 1e-13);
  return s;
}
/// The skip variants against the definition's step s, the skip being the output buffer itself (the
/// in-place residual): forward_add gives skip + y, backward_add skip + dL/dx and the same dL/dW.
void check_in_place_skip(Conv2d<double>& conv, const Case& c, const Step& s) {
  Eigen::MatrixXd y = s.dy;
  conv.forward_add(s.x, y, y);
  REQUIRE(rbtest::rel_diff(y, s.dy + reference(conv, s.x, c.size)) < 1e-13);
  Eigen::MatrixXd g = s.x;
  conv.zero_grad();
  conv.backward_add(s.dy, g, g);
  REQUIRE(rbtest::rel_diff(g, s.x + s.dx) < 1e-13);
  REQUIRE(rbtest::rel_diff(conv.weight_grad(), s.dw) < 1e-13);
}
}  // namespace

TEST_CASE("Conv2d: backward matches the definition, small and multi-part sizes", "[conv2d]") {
  auto check = [](const Case& c) {
    INFO(describe(c));
    Conv2d<double> conv(c.cin, c.cout, c.k, c.opt);
    check_against_definition(conv, c, 13);
  };
  for (const Case& c : k_cases) check(c);
  for (const Case& c : k_large_cases) check(c);
}

TEST_CASE("Conv2d: the implicit GEMM gives the bits of im2col + GEMM", "[conv2d]") {
  for (const Case& c : k_large_cases) {
    for (const Index chunk : {Index(1) << 40, Index(7)}) {
      INFO(describe(c) << " chunk " << chunk);
      Conv2d<float> with(c.cin, c.cout, c.k, c.opt), without(c.cin, c.cout, c.k, c.opt);
      without.weight() = with.weight();
      if (c.opt.bias) without.bias() = with.bias();
      without.set_implicit_gemm(false);
      with.set_direct(false);
      without.set_direct(false);
      with.set_max_chunk_positions(chunk);
      without.set_max_chunk_positions(chunk);
      const ImageSize out = with.set_image_size(c.size);
      without.set_image_size(c.size);
      const auto x = rbtest::random_batch<Eigen::MatrixXf>(c.cin, c.n * c.size.area(), 23);
      const auto dy = rbtest::random_batch<Eigen::MatrixXf>(c.cout, c.n * out.area(), 24);
      REQUIRE(with.forward(x) == without.forward(x));
      REQUIRE(with.backward(dy) == without.backward(dy));
      REQUIRE(with.weight_grad() == without.weight_grad());
    }
  }
}

// Shapes the direct kernels take (channels of 1, 2 or 4 SIMD packets: 8/16/32 doubles, 16/32/64
// floats with AVX-512; 4/8/16 doubles with AVX2): rows as wide as a block, wider (the last block
// overlaps), narrower (half blocks); strides, 1x1, 5x5, padding 0 and 2; a 1-channel input (stem).
const Case k_direct_cases[] = {
    {16, 16, 3, {.padding = 1, .bias = false}, {14, 14}, 3},
    {16, 16, 3, {.padding = 1}, {9, 16}, 2},
    {8, 32, 3, {.padding = 1, .bias = false}, {8, 8}, 3},
    {32, 8, 3, {.padding = 0}, {9, 30}, 2},
    {16, 32, 3, {.stride = 2, .padding = 1, .bias = false}, {28, 28}, 2},
    {32, 16, 1, {.stride = 2, .bias = false}, {14, 14}, 2},
    {8, 16, 5, {.padding = 2}, {13, 15}, 2},
    {1, 16, 3, {.padding = 1, .bias = false}, {28, 28}, 3},
    {32, 32, 3, {.padding = 1, .bias = false}, {7, 7}, 5},
    {64, 64, 3, {.padding = 1, .bias = false}, {7, 7}, 2},
};

TEST_CASE("Conv2d: the direct kernels match the definition (double) and the GEMM paths (float)", "[conv2d]") {
  for (const Case& c : k_direct_cases) {
    INFO(describe(c));
    Conv2d<double> conv(c.cin, c.cout, c.k, c.opt);
    const Step step = check_against_definition(conv, c, 31);
    check_in_place_skip(conv, c, step);
    const Eigen::MatrixXd& x = step.x;
    const Eigen::MatrixXd& dy = step.dy;

    Conv2d<float> direct(c.cin, c.cout, c.k, c.opt), gemm(c.cin, c.cout, c.k, c.opt);
    gemm.weight() = direct.weight();
    if (c.opt.bias) gemm.bias() = direct.bias();
    gemm.set_direct(false);
    direct.set_image_size(c.size);
    gemm.set_image_size(c.size);
    const Eigen::MatrixXf xf = x.cast<float>(), dyf = dy.cast<float>();
    REQUIRE(rbtest::rel_diff(direct.forward(xf), gemm.forward(xf)) < 1e-5);
    REQUIRE(rbtest::rel_diff(direct.backward(dyf), gemm.backward(dyf)) < 1e-5);
    REQUIRE(rbtest::rel_diff(direct.weight_grad(), gemm.weight_grad()) < 1e-5);
    Conv2d<float>::Workspace ws;
    const Eigen::MatrixXf yf = direct.forward(xf);
    REQUIRE(direct.infer(xf, ws) == yf);
  }
}

// 3×3, stride 1, padding 1, whole packets of channels on both sides: Winograd (F(4×4, 3×3) or F(2×2, 3×3)),
// forward, dL/dx and dL/dW. Even and odd sides, one tile row, several parts, skip and bias.
const Case k_winograd_cases[] = {
    {16, 16, 3, {.padding = 1, .bias = false}, {14, 14}, 3}, {16, 32, 3, {.padding = 1}, {9, 16}, 2},
    {32, 16, 3, {.padding = 1, .bias = false}, {7, 7}, 9},   {64, 64, 3, {.padding = 1}, {7, 8}, 2},
    {32, 32, 3, {.padding = 1, .bias = false}, {3, 30}, 2},
};

// Whether a convolution from `in` to `out` channels on an h×w output runs Winograd in S on this
// instruction set (the direct kernels' output channels, whole packets of input channels, enough tiles).
template <class S>
bool winograd_runs(Index in, Index out, ImageSize size) {
  const detail::DirectConvPlan plan = detail::direct_conv_plan<S>(out, size.width);
  return plan.ok() && in % detail::DirectConvTraits<S>::lanes == 0 &&
         detail::winograd_plan<S>(plan.nv, size.height, size.width).ok();
}

// Whether dL/dW runs Winograd: the direct backward (the direct kernels' channels both ways) with
// whole packets of input channels.
template <class S>
bool winograd_weight_runs(Index in, Index out, ImageSize size) {
  return detail::direct_conv_plan<S>(out, size.width).ok() && detail::direct_conv_plan<S>(in, size.width).ok() &&
         in % detail::DirectConvTraits<S>::lanes == 0;
}

TEST_CASE("Conv2d: forward_sample_blocks names the epilogue's blocks where they are whole samples", "[conv2d]") {
  Conv2d<float> conv(16, 16, 3, {.padding = 1, .bias = false});
  conv.set_image_size({6, 16});
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(16, 3 * 96, 21);
  const detail::SampleBlocks blocks = conv.forward_sample_blocks(x);
  REQUIRE(blocks.columns == 96);
  REQUIRE(blocks.samples == 3);
  std::vector<Index> seen(3, 0);  // each sample's columns exactly once, as one block
  conv.forward_then(x, detail::NoPrepare{}, [&](const auto& y, Index r0, Index rows, Index c0, Index cols) {
    REQUIRE(r0 == 0);
    REQUIRE(rows == y.rows());
    REQUIRE(cols == 96);
    REQUIRE(c0 % 96 == 0);
    ++seen[std::size_t(c0 / 96)];
  });
  REQUIRE(seen == std::vector<Index>{1, 1, 1});
  // Not whole images, or a GEMM path (blocks of positions): none.
  REQUIRE_FALSE(conv.forward_sample_blocks(rbtest::random_batch<Eigen::MatrixXf>(16, 100, 22)));
  Conv2d<float> grouped(16, 16, 3, {.padding = 1, .groups = 2, .bias = false}), pointwise(16, 16, 1, {.bias = false});
  grouped.set_image_size({6, 16});
  pointwise.set_image_size({6, 16});
  REQUIRE_FALSE(grouped.forward_sample_blocks(x));
  REQUIRE_FALSE(pointwise.forward_sample_blocks(x));
}

TEST_CASE("Conv2d: Winograd matches the definition (double) and the direct kernels (float)", "[conv2d][winograd]") {
  for (const Case& c : k_winograd_cases) {
    INFO(describe(c));
    Conv2d<double> conv(c.cin, c.cout, c.k, c.opt);
    conv.set_winograd(true);
    const Step step = check_against_definition(conv, c, 61);
    check_in_place_skip(conv, c, step);
    const Eigen::MatrixXd& x = step.x;
    const Eigen::MatrixXd& dy = step.dy;

    // Float runs Winograd by default: it agrees with the direct kernels, infer gives forward's bits.
    Conv2d<float> wino(c.cin, c.cout, c.k, c.opt), direct(c.cin, c.cout, c.k, c.opt);
    rbtest::copy_parameters(conv, wino);
    rbtest::copy_parameters(conv, direct);
    direct.set_winograd(false);
    wino.set_image_size(c.size);
    direct.set_image_size(c.size);
    const Eigen::MatrixXf xf = x.cast<float>(), dyf = dy.cast<float>();
    const Eigen::MatrixXf yw = wino.forward(xf), yd = direct.forward(xf);
    // Another order of rounding where the Winograd path runs.
    REQUIRE((yw != yd) == winograd_runs<float>(c.cin, c.cout, c.size));
    // F(4×4, 3×3) rounds about ten times more than F(2×2, 3×3) (core/winograd_conv_test.cpp).
    REQUIRE(rbtest::rel_diff(yw, yd) < 1e-5);
    const Eigen::MatrixXf dxw = wino.backward(dyf), dxd = direct.backward(dyf);
    REQUIRE((dxw != dxd) == (winograd_runs<float>(c.cout, c.cin, c.size) &&
                             detail::direct_conv_plan<float>(c.cout, c.size.width).ok()));
    REQUIRE(rbtest::rel_diff(dxw, dxd) < 1e-5);
    REQUIRE((wino.weight_grad() != direct.weight_grad()) == winograd_weight_runs<float>(c.cin, c.cout, c.size));
    REQUIRE(rbtest::rel_diff(wino.weight_grad(), direct.weight_grad()) < 1e-5);
    Conv2d<float>::Workspace ws;
    REQUIRE(wino.infer(xf, ws) == yw);
  }
}

TEST_CASE("Conv2d: Winograd gradients (double, static and dynamic channels)", "[conv2d][winograd][gradient]") {
  Conv2d<double> conv(16, 8, 3, {.padding = 1});
  conv.set_winograd(true);
  conv.set_image_size({5, 6});
  rbtest::require_gradients(conv, rbtest::random_batch<Eigen::MatrixXd>(16, 2 * 30, 71));
  Conv2d<double, 8, 16> fixed(3, {.padding = 1, .bias = false});
  fixed.set_winograd(true);
  fixed.set_image_size({4, 7});
  rbtest::require_gradients(fixed, rbtest::random_batch<Batch<double, 8>>(8, 3 * 28, 72));
}

TEST_CASE("Conv2d: without the input gradient, dL/dW is unchanged and dL/dx is zero (or the skip)", "[conv2d]") {
  const Case cases[] = {k_direct_cases[7], k_direct_cases[0], k_direct_cases[4], k_cases[0], k_large_cases[3]};
  for (const Case& c : cases) {
    INFO(describe(c));
    Conv2d<double> with(c.cin, c.cout, c.k, c.opt), without(c.cin, c.cout, c.k, c.opt);
    without.weight() = with.weight();
    if (c.opt.bias) without.bias() = with.bias();
    without.set_input_gradient(false);
    REQUIRE_FALSE(without.input_gradient());
    const ImageSize out = with.set_image_size(c.size);
    without.set_image_size(c.size);
    const auto x = rbtest::random_batch<Eigen::MatrixXd>(c.cin, c.n * c.size.area(), 41);
    const auto dy = rbtest::random_batch<Eigen::MatrixXd>(c.cout, c.n * out.area(), 42);
    with.forward(x);
    without.forward(x);
    with.backward(dy);
    REQUIRE(without.backward(dy).isZero(0.0));
    REQUIRE(without.backward(dy).rows() == c.cin);
    REQUIRE(rbtest::rel_diff(without.weight_grad(), 2.0 * with.weight_grad()) < 1e-13);
    Eigen::MatrixXd g;
    without.backward_add(dy, g, x);
    REQUIRE(g == x);
  }
}

TEST_CASE("Conv2d: gradients (dynamic channels, several geometries, chunked)", "[conv2d][gradient]") {
  for (const Case& c : k_cases) {
    INFO(describe(c));
    Conv2d<double> conv(c.cin, c.cout, c.k, c.opt);
    conv.set_image_size(c.size);
    conv.set_max_chunk_positions(5);
    const auto x = rbtest::random_batch<Eigen::MatrixXd>(c.cin, c.n * c.size.area(), 4);
    rbtest::require_gradients(conv, x);
  }
}

TEST_CASE("Conv2d: gradients with static channel counts", "[conv2d][gradient]") {
  Conv2d<double, 3, 4> conv(3, {.stride = 2, .padding = 1});
  conv.set_image_size({5, 5});
  const auto x = rbtest::random_batch<Batch<double, 3>>(3, 2 * 25, 5);
  rbtest::require_gradients(conv, x);
  Conv2d<double, 4, 4> pointwise(1);
  pointwise.set_image_size({3, 3});
  const auto x4 = rbtest::random_batch<Batch<double, 4>>(4, 18, 6);
  rbtest::require_gradients(pointwise, x4);
}

TEST_CASE("Conv2d: float agrees with double, infer equals forward, skip adds", "[conv2d]") {
  Conv2d<double> d(3, 8, 3, {.padding = 1});
  Conv2d<float> f(3, 8, 3, {.padding = 1});
  rbtest::copy_parameters(d, f);
  d.set_image_size({6, 6});
  f.set_image_size({6, 6});
  const auto xd = rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 36, 7);
  const auto gd = rbtest::random_batch<Eigen::MatrixXd>(8, 2 * 36, 8);
  rbtest::require_float_agrees(f, d, xd, gd);
  const Eigen::MatrixXf xf = xd.cast<float>(), gf = gd.cast<float>();
  REQUIRE(rbtest::rel_diff(f.weight_grad(), d.weight_grad()) < 1e-5);

  Conv2d<float>::Workspace ws;
  const Eigen::MatrixXf y = f.forward(xf);
  REQUIRE(f.infer(xf, ws) == y);

  const Eigen::MatrixXf skip = rbtest::random_batch<Eigen::MatrixXf>(8, 2 * 36, 9);
  Eigen::MatrixXf sum;
  f.forward_add(xf, sum, skip);
  REQUIRE((sum - (skip + y)).cwiseAbs().maxCoeff() < 1e-6f);
  Eigen::MatrixXf dx_plus;
  const Eigen::MatrixXf dx = f.backward(gf);
  f.backward_add(gf, dx_plus, skip.topRows(3));
  REQUIRE((dx_plus - (skip.topRows(3) + dx)).cwiseAbs().maxCoeff() < 1e-6f);
}

TEST_CASE("Conv2d: weight is PyTorch's [out, in/groups, k, k] and named like it", "[conv2d]") {
  Conv2d<double> conv(4, 6, 3, {.groups = 2});
  REQUIRE(conv.weight().rows() == 6);
  REQUIRE(conv.weight().cols() == 2 * 9);
  REQUIRE(conv.fan_in() == 18);
  REQUIRE(conv.fan_out() == 27);
  std::vector<std::string> names;
  conv.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  REQUIRE(names == std::vector<std::string>{"weight", "bias"});
  // PyTorch's default init bound 1/sqrt(fan_in)
  REQUIRE(conv.weight().cwiseAbs().maxCoeff() <= 1.0 / std::sqrt(18.0));
}

TEST_CASE("Conv2d: bad shapes and arguments are clear errors", "[conv2d][errors]") {
  REQUIRE_THROWS_AS(Conv2d<float>(3, 4, 0), std::invalid_argument);
  REQUIRE_THROWS_AS(Conv2d<float>(3, 4, 3, {.stride = 0}), std::invalid_argument);
  REQUIRE_THROWS_WITH(Conv2d<float>(3, 4, 3, {.groups = 2}), rbtest::contains("groups (2) must divide"));
  Conv2d<float> conv(3, 4, 3);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Ones(3, 50);
  REQUIRE_THROWS_WITH(conv.forward(x), rbtest::contains("image size not set"));
  REQUIRE_THROWS_WITH(conv.set_image_size({2, 2}), rbtest::contains("smaller than the 3x3"));
  conv.set_image_size({4, 4});
  REQUIRE_THROWS_WITH(conv.forward(x), rbtest::contains("not a whole number of 4x4 images"));
  const Eigen::MatrixXf wrong = Eigen::MatrixXf::Ones(2, 32);
  REQUIRE_THROWS_WITH(conv.forward(wrong), rbtest::contains("Conv2d: input is 2x32"));
  const Eigen::MatrixXf good = Eigen::MatrixXf::Ones(3, 32);
  conv.forward(good);
  REQUIRE_THROWS_WITH(conv.backward(Eigen::MatrixXf::Ones(4, 9)), rbtest::contains("output gradient is 4x9"));
}
