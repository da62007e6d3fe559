// PyTorch parity of the image layers: MaxPool2d, AvgPool2d, Flatten and GlobalAvgPool against the
// fixtures pool_max, pool_avg, flatten and global_avg_pool written by tests/reference/make_fixtures.py.
//
// Each fixture holds x in the image layout (channels x N·H·W), its NCHW shape `x_shape`, an upstream
// gradient dL_dy, and PyTorch's y and dL/dx. Every layer runs in double (tolerance 1e-12) and float
// (1e-5), with static and Dynamic channel counts; a comparison passes when
// max |resblocks - PyTorch| <= tol * max(1, max |PyTorch|).

#include "support/catch.hpp"
#include "support/fixture.hpp"
#include "support/parity.hpp"

#include <resblocks/layers/avg_pool2d.hpp>
#include <resblocks/layers/flatten.hpp>
#include <resblocks/layers/global_avg_pool.hpp>
#include <resblocks/layers/max_pool2d.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <iomanip>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace {

using resblocks::Index;
using resblocks_tests::check_close;
using resblocks_tests::Fixture;
using resblocks_tests::fixture_batch;
using resblocks_tests::load_fixture;
using resblocks_tests::tolerance;

/// Configures `layer` for the fixture's image size, runs forward(x) and backward(dL_dy), and compares
/// y and dL/dx with PyTorch's, and infer(x) with PyTorch's y.
template <class L>
void check_parity(L& layer, const std::string& file) {
  using S = typename L::Scalar;
  constexpr double tol = tolerance<S>;
  const Fixture fixture = load_fixture(file);
  const Eigen::MatrixXd& shape = fixture.matrix("x_shape");  // N, C, H, W
  REQUIRE(shape.size() == 4);
  layer.set_image_size({static_cast<Index>(shape(2)), static_cast<Index>(shape(3))});

  const typename L::Input x = fixture_batch<typename L::Input>(fixture, "x");
  const typename L::Output dL_dy = fixture_batch<typename L::Output>(fixture, "dL_dy");
  REQUIRE(x.rows() == static_cast<Index>(shape(1)));
  REQUIRE(x.cols() == static_cast<Index>(shape(0) * shape(2) * shape(3)));

  check_close(fixture, "y", layer.forward(x), tol, "forward");
  check_close(fixture, "dL_dx", layer.backward(dL_dy), tol, "backward");
  typename L::Workspace ws;
  check_close(fixture, "y", std::as_const(layer).infer(x, ws), tol, "infer");
}

}  // namespace

TEST_CASE("PyTorch parity: MaxPool2d(3, stride=2, padding=1)", "[reference][maxpool]") {
  SECTION("double, Dynamic channels") {
    resblocks::MaxPool2d<double> pool(3, 2, 1);
    check_parity(pool, "pool_max.txt");
  }
  SECTION("double, 3 channels") {
    resblocks::MaxPool2d<double, 3> pool(3, 2, 1);
    check_parity(pool, "pool_max.txt");
  }
  SECTION("float, Dynamic channels") {
    resblocks::MaxPool2d<float> pool(3, 2, 1, 3);
    check_parity(pool, "pool_max.txt");
  }
  SECTION("float, 3 channels") {
    resblocks::MaxPool2d<float, 3> pool(3, 2, 1);
    check_parity(pool, "pool_max.txt");
  }
}

TEST_CASE("PyTorch parity: AvgPool2d(3, stride=2, padding=1)", "[reference][avgpool]") {
  SECTION("double, Dynamic channels") {
    resblocks::AvgPool2d<double> pool(3, 2, 1);
    check_parity(pool, "pool_avg.txt");
  }
  SECTION("double, 3 channels") {
    resblocks::AvgPool2d<double, 3> pool(3, 2, 1);
    check_parity(pool, "pool_avg.txt");
  }
  SECTION("float, Dynamic channels") {
    resblocks::AvgPool2d<float> pool(3, 2, 1, 3);
    check_parity(pool, "pool_avg.txt");
  }
  SECTION("float, 3 channels") {
    resblocks::AvgPool2d<float, 3> pool(3, 2, 1);
    check_parity(pool, "pool_avg.txt");
  }
}

TEST_CASE("PyTorch parity: Flatten (torch.flatten(x, 1))", "[reference][flatten]") {
  SECTION("double, Dynamic channels") {
    resblocks::Flatten<double> flat;
    check_parity(flat, "flatten.txt");
  }
  SECTION("double, 3 channels") {
    resblocks::Flatten<double, 3> flat;
    check_parity(flat, "flatten.txt");
    REQUIRE(flat.out_features() == 60);
  }
  SECTION("float, Dynamic channels") {
    resblocks::Flatten<float> flat(3);
    check_parity(flat, "flatten.txt");
  }
  SECTION("float, 3 channels") {
    resblocks::Flatten<float, 3> flat;
    check_parity(flat, "flatten.txt");
  }
}

TEST_CASE("PyTorch parity: GlobalAvgPool (adaptive_avg_pool2d(x, 1), flattened)", "[reference][globalavgpool]") {
  SECTION("double, Dynamic channels") {
    resblocks::GlobalAvgPool<double> pool;
    check_parity(pool, "global_avg_pool.txt");
  }
  SECTION("double, 3 channels") {
    resblocks::GlobalAvgPool<double, 3> pool;
    check_parity(pool, "global_avg_pool.txt");
  }
  SECTION("float, Dynamic channels") {
    resblocks::GlobalAvgPool<float> pool(3);
    check_parity(pool, "global_avg_pool.txt");
  }
  SECTION("float, 3 channels") {
    resblocks::GlobalAvgPool<float, 3> pool;
    check_parity(pool, "global_avg_pool.txt");
  }
}
