// from_nchw / to_nchw, from_nhwc / to_nhwc, from_nd / to_nd against torch's own memory order
// (tests/reference/make_layout_fixtures.py) and a 3x3 convolution computed by torch.

#include "support/fixture.hpp"
#include "support/helpers.hpp"

#include <resblocks/core/tensor_layout.hpp>
#include <resblocks/layers/conv2d.hpp>

#include <Eigen/Core>

#include <span>
#include <stdexcept>
#include <vector>

using namespace resblocks;

namespace {

std::span<const double> flat(const Eigen::MatrixXd& column) { return {column.data(), std::size_t(column.size())}; }

ImageTensorShape shape_of(const Eigen::MatrixXd& s) {
  return {Index(s(0, 0)), Index(s(1, 0)), Index(s(2, 0)), Index(s(3, 0))};
}

/// resblocks' layout built element by element from the documented index: column w + W·(h + H·n).
Eigen::MatrixXd documented_layout(std::span<const double> nchw, const ImageTensorShape& s) {
  Eigen::MatrixXd m(s.c, s.n * s.h * s.w);
  for (Index n = 0; n < s.n; ++n)
    for (Index c = 0; c < s.c; ++c)
      for (Index h = 0; h < s.h; ++h)
        for (Index w = 0; w < s.w; ++w)
          m(c, w + s.w * (h + s.h * n)) = nchw[std::size_t(((n * s.c + c) * s.h + h) * s.w + w)];
  return m;
}

}  // namespace

TEST_CASE("tensor layout: NCHW, NHWC and (n, d) buffers in torch's order", "[core][layout][parity]") {
  const resblocks_tests::Fixture f = resblocks_tests::load_fixture("layout.txt");
  const ImageTensorShape shape = shape_of(f.matrix("x_shape"));
  REQUIRE(shape.size() == 2 * 3 * 4 * 5);
  const Eigen::MatrixXd expected = documented_layout(flat(f.matrix("x_nchw")), shape);

  const Eigen::MatrixXd x = from_nchw(flat(f.matrix("x_nchw")), shape);
  REQUIRE(x == expected);
  REQUIRE(from_nhwc(flat(f.matrix("x_nhwc")), shape) == expected);  // torch's permute(0, 2, 3, 1)
  REQUIRE_FALSE(Eigen::Map<const Eigen::MatrixXd>(f.matrix("x_nchw").data(), 3, 40) == expected);  // the trap

  std::vector<double> back(std::size_t(shape.size()));
  to_nchw(x, shape.image(), std::span<double>(back));
  REQUIRE(Eigen::Map<const Eigen::VectorXd>(back.data(), Index(back.size())) == f.matrix("x_nchw"));
  to_nhwc(x, shape.image(), std::span<double>(back));
  REQUIRE(Eigen::Map<const Eigen::VectorXd>(back.data(), Index(back.size())) == f.matrix("x_nhwc"));

  // The pixel order matters to a 3x3 convolution: torch's NCHW output, through the helpers.
  Conv2d<double> conv(3, 4, 3, {.padding = 1});
  conv.weight() = f.matrix("param.weight");
  conv.bias() = f.matrix("param.bias");
  conv.set_image_size(shape.image());
  const Eigen::MatrixXd& y = conv.forward(x);
  const ImageTensorShape y_shape = shape_of(f.matrix("y_shape"));
  std::vector<double> y_nchw(std::size_t(y_shape.size()));
  to_nchw(y, y_shape.image(), std::span<double>(y_nchw));
  const Eigen::VectorXd y_torch = f.matrix("y_nchw");
  REQUIRE((Eigen::Map<const Eigen::VectorXd>(y_nchw.data(), y_torch.size()) - y_torch).cwiseAbs().maxCoeff() < 1e-12);

  // A dense (n, d) batch: d × n, and back.
  const Eigen::MatrixXd ts = f.matrix("t_shape");
  const Index n = Index(ts(0, 0)), d = Index(ts(1, 0));
  const Eigen::MatrixXd t = from_nd(flat(f.matrix("t_nd")), n, d);
  REQUIRE(t.rows() == d);
  REQUIRE(t.cols() == n);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < d; ++j) REQUIRE(t(j, i) == f.matrix("t_nd")(i * d + j, 0));
  std::vector<double> t_back(std::size_t(n * d));
  to_nd(t, std::span<double>(t_back));
  REQUIRE(Eigen::Map<const Eigen::VectorXd>(t_back.data(), n * d) == f.matrix("t_nd"));
}

TEST_CASE("tensor layout: static channel counts, output reuse and size errors", "[core][layout][errors]") {
  std::vector<float> buffer(2 * 3 * 2 * 2);
  for (std::size_t i = 0; i < buffer.size(); ++i) buffer[i] = float(i);
  Batch<float, 3> x;
  from_nchw(std::span<const float>(buffer), {2, 3, 2, 2}, x);
  REQUIRE(x(1, 4 + 2) == buffer[(1 * 3 + 1) * 4 + 2]);  // sample 1, channel 1, pixel 2
  const float* storage = x.data();
  from_nchw(std::span<const float>(buffer), {2, 3, 2, 2}, x);
  REQUIRE(x.data() == storage);  // same shape: no reallocation

  REQUIRE_THROWS_WITH(from_nchw(std::span<const float>(buffer), {2, 3, 2, 3}, x),
                      rbtest::contains("from_nchw") && rbtest::contains("24 elements") && rbtest::contains("needs 36"));
  Batch<float, 4> four;
  REQUIRE_THROWS_WITH(from_nhwc(std::span<const float>(buffer), {2, 3, 2, 2}, four),
                      rbtest::contains("from_nhwc") && rbtest::contains("4 rows"));
  std::vector<float> small(5);
  REQUIRE_THROWS_WITH(to_nchw(x, {2, 2}, std::span<float>(small)),
                      rbtest::contains("to_nchw") && rbtest::contains("5 elements"));
  REQUIRE_THROWS_WITH(to_nchw(x, {3, 3}, std::span<float>(buffer)), rbtest::contains("not a whole number"));
  REQUIRE_THROWS_AS(from_nd(std::span<const float>(buffer), 5, 5), std::invalid_argument);
}
