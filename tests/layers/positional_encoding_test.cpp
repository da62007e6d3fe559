#include "support/helpers.hpp"

#include <resblocks/layers/positional_encoding.hpp>

#include <Eigen/Core>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

using namespace resblocks;
using rbtest::contains;

TEST_CASE("PositionalEncoding: the sinusoidal table is sin/cos of t / 10000^(2i/d)", "[positional]") {
  // d = 4: frequencies 1 and 1/100; d = 5: also 10000^(-4/5), its cosine partner would be row 5.
  PositionalEncoding<double> pe4(4, 50);
  REQUIRE(pe4.kind() == PositionalEncodingKind::sinusoidal);
  for (Index t = 0; t < 50; ++t) {
    const double x = double(t);
    REQUIRE(std::abs(pe4.table()(t, 0) - std::sin(x)) < 1e-15);
    REQUIRE(std::abs(pe4.table()(t, 1) - std::cos(x)) < 1e-15);
    REQUIRE(std::abs(pe4.table()(t, 2) - std::sin(x / 100.0)) < 1e-15);
    REQUIRE(std::abs(pe4.table()(t, 3) - std::cos(x / 100.0)) < 1e-15);
  }
  PositionalEncoding<float, 5> pe5(9);
  for (Index t = 0; t < 9; ++t)
    REQUIRE(std::abs(double(pe5.table()(t, 4)) - std::sin(double(t) / std::pow(10000.0, 0.8))) < 1e-7);
  REQUIRE(pe5.table().row(0) == Eigen::RowVectorXf((Eigen::RowVectorXf(5) << 0, 1, 0, 1, 0).finished()));
  // Fixed: no parameters.
  int visited = 0;
  pe4.for_each_parameter([&](std::string_view, const auto&, const auto&) { ++visited; });
  REQUIRE(visited == 0);
}

TEST_CASE("PositionalEncoding: token t of every sequence gets row t", "[positional]") {
  for (auto kind : {PositionalEncodingKind::sinusoidal, PositionalEncodingKind::learned}) {
    PositionalEncoding<double> pe(6, 10, kind);
    pe.set_sequence_length(4);
    REQUIRE(pe.sequence_length() == 4);
    const auto x = rbtest::random_batch<Eigen::MatrixXd>(6, 12, 1);  // 3 sequences of 4
    const Eigen::MatrixXd& y = pe.forward(x);
    for (Index b = 0; b < 3; ++b)
      for (Index t = 0; t < 4; ++t)
        REQUIRE(y.col(t + 4 * b) == x.col(t + 4 * b) + Eigen::VectorXd(pe.table().row(t).transpose()));
    PositionalEncoding<double>::Workspace ws;
    REQUIRE(pe.infer(x, ws) == y);
  }
}

TEST_CASE("PositionalEncoding: gradients, learned and sinusoidal (double, static and Dynamic d)",
          "[positional][gradient]") {
  PositionalEncoding<double, 6> learned(8, PositionalEncodingKind::learned);
  learned.set_sequence_length(5);
  rbtest::require_gradients(learned, rbtest::random_batch<Batch<double, 6>>(6, 15, 2));
  PositionalEncoding<double> dynamic(5, 7, PositionalEncodingKind::learned);
  dynamic.set_sequence_length(7);
  rbtest::require_gradients(dynamic, rbtest::random_batch<Eigen::MatrixXd>(5, 14, 3));
  PositionalEncoding<double> fixed(5, 7);
  fixed.set_sequence_length(3);
  rbtest::require_gradients(fixed, rbtest::random_batch<Eigen::MatrixXd>(5, 6, 4));
}

TEST_CASE("PositionalEncoding: the learned gradient sums over sequences, dL/dx = dL/dy", "[positional]") {
  PositionalEncoding<double> pe(2, 4, PositionalEncodingKind::learned);
  pe.set_sequence_length(2);
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(2, 6, 5);
  pe.forward(x);
  Eigen::MatrixXd g(2, 6);
  g << 1, 2, 3, 4, 5, 6,  //
      10, 20, 30, 40, 50, 60;
  pe.zero_grad();
  REQUIRE(pe.backward(g) == g);
  Eigen::MatrixXd expected = Eigen::MatrixXd::Zero(4, 2);
  expected.row(0) << 1 + 3 + 5, 10 + 30 + 50;
  expected.row(1) << 2 + 4 + 6, 20 + 40 + 60;
  REQUIRE(pe.table_grad() == expected);
  std::vector<std::string> names;
  pe.for_each_parameter([&](std::string_view name, const auto& value, const auto&) {
    names.emplace_back(name);
    REQUIRE(value.rows() == 4);  // max_length x d, as nn.Embedding(max_length, d).weight
    REQUIRE(value.cols() == 2);
  });
  REQUIRE(names == std::vector<std::string>{"weight"});
}

TEST_CASE("PositionalEncoding: float smoke", "[positional][float]") {
  PositionalEncoding<float, 16> pe(64, PositionalEncodingKind::learned);
  pe.set_sequence_length(64);
  const auto x = rbtest::random_batch<Batch<float, 16>>(16, 64 * 3, 6);
  REQUIRE(pe.forward(x).allFinite());
  REQUIRE(pe.backward(x).allFinite());
  REQUIRE(pe.table_grad().allFinite());
}

TEST_CASE("PositionalEncoding: bad lengths and shapes throw clear errors", "[positional][error]") {
  PositionalEncoding<float> pe(4, 8);
  const auto x = rbtest::random_batch<Eigen::MatrixXf>(4, 6, 7);
  REQUIRE_THROWS_WITH(pe.forward(x), contains("set_sequence_length"));
  REQUIRE_THROWS_WITH(pe.set_sequence_length(9), contains("must be in [1, 8]") && contains("got 9"));
  REQUIRE_THROWS_AS(pe.set_sequence_length(0), std::invalid_argument);
  pe.set_sequence_length(4);
  REQUIRE_THROWS_WITH(pe.forward(x), contains("not a whole number of sequences of length 4"));
  pe.set_sequence_length(3);
  const auto wrong = rbtest::random_batch<Eigen::MatrixXf>(5, 6, 8);
  REQUIRE_THROWS_WITH(pe.forward(wrong), contains("PositionalEncoding") && contains("5x6"));
  REQUIRE_THROWS_AS(PositionalEncoding<float>(4, 8).backward(x), std::logic_error);
  REQUIRE_THROWS_WITH(PositionalEncoding<float>(4, 0), contains("max_length must be >= 1"));
}
