#include "support/helpers.hpp"

#include <resblocks/layers/token_embedding.hpp>

#include <Eigen/Core>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

using namespace resblocks;
using rbtest::contains;

TEST_CASE("TokenEmbedding: forward picks the ids' rows, in column order", "[embedding]") {
  TokenEmbedding<double> emb(5, 3);
  for (Index i = 0; i < 5; ++i)
    for (Index j = 0; j < 3; ++j) emb.weight()(i, j) = 10.0 * double(i) + double(j);
  const std::vector<int> ids{4, 0, 4, 2};
  const Eigen::MatrixXd& y = emb.forward(ids);
  REQUIRE(y.rows() == 3);
  REQUIRE(y.cols() == 4);
  for (Index c = 0; c < 4; ++c)
    for (Index r = 0; r < 3; ++r) REQUIRE(y(r, c) == 10.0 * ids[static_cast<std::size_t>(c)] + double(r));
  TokenEmbedding<double>::Workspace ws;
  REQUIRE(emb.infer(ids, ws) == y);
}

TEST_CASE("TokenEmbedding: backward scatter-adds dL/dy into the ids' rows and accumulates", "[embedding]") {
  TokenEmbedding<double, 2> emb(4);
  const std::vector<int> ids{1, 3, 1};
  emb.forward(ids);
  Batch<double, 2> g(2, 3);
  g << 1, 2, 4,  //
      -1, 8, 16;
  emb.zero_grad();
  emb.backward(g);
  Eigen::MatrixXd expected = Eigen::MatrixXd::Zero(4, 2);
  expected.row(1) << 1 + 4, -1 + 16;  // id 1 twice
  expected.row(3) << 2, 8;
  REQUIRE(emb.weight_grad() == expected);
  emb.backward(g);
  REQUIRE(emb.weight_grad() == 2.0 * expected);
  emb.zero_grad();
  REQUIRE(emb.weight_grad().isZero(0.0));
}

TEST_CASE("TokenEmbedding: the weight gradient matches finite differences of Σ R ⊙ y", "[embedding][gradient]") {
  TokenEmbedding<double> emb(6, 4);
  const std::vector<int> ids{0, 5, 5, 2, 3, 0, 1};
  const auto r = rbtest::random_batch<Eigen::MatrixXd>(4, 7, 1);
  emb.zero_grad();
  emb.forward(ids);
  emb.backward(r);
  const Eigen::MatrixXd analytic = emb.weight_grad();
  const double h = 1e-6;
  for (Index i = 0; i < 6; ++i)
    for (Index j = 0; j < 4; ++j) {
      const double saved = emb.weight()(i, j);
      emb.weight()(i, j) = saved + h;
      const double up = (emb.forward(ids).array() * r.array()).sum();
      emb.weight()(i, j) = saved - h;
      const double down = (emb.forward(ids).array() * r.array()).sum();
      emb.weight()(i, j) = saved;
      REQUIRE(std::abs(analytic(i, j) - (up - down) / (2 * h)) < 1e-8);
    }
  REQUIRE(analytic.row(4).isZero(0.0));  // id 4 not used
}

TEST_CASE("TokenEmbedding: parameter `weight` is vocab x d as nn.Embedding, initialised N(0, 1)", "[embedding]") {
  manual_seed(3);
  TokenEmbedding<float> emb(200, 50);
  std::vector<std::string> names;
  emb.for_each_parameter([&](std::string_view name, const auto& value, const auto& grad) {
    names.emplace_back(name);
    REQUIRE(value.rows() == 200);
    REQUIRE(value.cols() == 50);
    REQUIRE(grad.rows() == 200);
  });
  REQUIRE(names == std::vector<std::string>{"weight"});
  const Eigen::ArrayXXd w = emb.weight().cast<double>().array();
  const double mean = w.mean(), var = (w - mean).square().mean();
  REQUIRE(std::abs(mean) < 0.03);
  REQUIRE(std::abs(var - 1.0) < 0.05);
  REQUIRE(emb.vocab_size() == 200);
  REQUIRE(emb.model_dim() == 50);
  // Row-major storage: a token's vector is contiguous.
  REQUIRE(&emb.weight()(7, 1) == &emb.weight()(7, 0) + 1);
  std::vector<std::string> prefixed;
  emb.for_each_parameter([&](std::string_view name, const auto&, const auto&) { prefixed.emplace_back(name); },
                         ParameterName("tok_emb"));
  REQUIRE(prefixed == std::vector<std::string>{"tok_emb.weight"});
}

TEST_CASE("TokenEmbedding: float and double agree, static and Dynamic d", "[embedding][float]") {
  TokenEmbedding<float, 8> f(30);
  TokenEmbedding<double> d(30, 8);
  rbtest::copy_parameters(f, d);
  std::vector<int> ids(100);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int>((i * 7) % 30);
  REQUIRE(rbtest::rel_diff(f.forward(ids), d.forward(ids)) == 0.0);  // a copy: exact
}

TEST_CASE("TokenEmbedding: bad ids and shapes throw clear errors", "[embedding][error]") {
  TokenEmbedding<float> emb(10, 4);
  const std::vector<int> negative{1, -1}, too_big{0, 10};
  REQUIRE_THROWS_WITH(emb.forward(negative), contains("TokenEmbedding: token id -1 at index 1 is outside [0, 10)"));
  REQUIRE_THROWS_WITH(emb.forward(too_big), contains("token id 10 at index 1"));
  TokenEmbedding<float>::Workspace ws;
  REQUIRE_THROWS_AS(emb.infer(too_big, ws), std::invalid_argument);
  REQUIRE_THROWS_AS(emb.backward(Eigen::MatrixXf::Zero(4, 2)), std::logic_error);  // before forward
  const std::vector<int> ids{1, 2, 3};
  emb.forward(ids);
  REQUIRE_THROWS_WITH(emb.backward(Eigen::MatrixXf::Zero(4, 2)), contains("4x2") && contains("4x3"));
  REQUIRE_THROWS_WITH(TokenEmbedding<float>(0, 4), contains("vocab and d_model must be >= 1"));
  REQUIRE_THROWS_WITH((TokenEmbedding<float, 4>(10, 5)), contains("fixes it to 4"));
}
