#include "blocks/dense_test_support.hpp"

#include <resblocks/blocks/dense_net.hpp>

#include <cmath>
#include <string>
#include <vector>

using namespace resblocks;

TEST_CASE("DenseNet: the paper's DenseNet-BC parameter counts", "[dense][densenet]") {
  // Huang et al. 2017, Table 2: DenseNet-BC (L=100, k=12) 0.8M, (L=250, k=24) 15.3M; exact counts of
  // torchvision's modules assembled the same way (stem conv3x3, no norm0/pool0).
  CHECK(parameter_count(DenseNet<float>()) == 769162);
  CHECK(parameter_count(DenseNet<float>({.depth = 250, .growth_rate = 24})) == 15324406);
  const auto p = DenseNet<float>::plan({});
  CHECK(p.layers == std::array<Index, 3>{16, 16, 16});
  CHECK(p.in == std::array<Index, 3>{24, 108, 150});
  CHECK(p.transition_out == std::array<Index, 2>{108, 150});
  CHECK(p.features == 342);
  const auto q = DenseNet<float>::plan({.block_layers = {2, 3, 4}, .growth_rate = 4, .compression = 0.3});
  CHECK(q.layers == std::array<Index, 3>{2, 3, 4});
  CHECK(q.transition_out == std::array<Index, 2>{4, 4});  // floor(0.3·16) = 4, floor(0.3·16) = 4
  CHECK(q.features == 20);
}

TEST_CASE("DenseNet: names as torchvision's DenseNet state_dict", "[dense][densenet]") {
  DenseNet<float> net({.block_layers = {2, 1, 1}, .growth_rate = 4, .classes = 5, .image = {8, 8}});
  std::vector<std::string> names, buffers;
  net.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  net.for_each_buffer([&](std::string_view n, const auto&) { buffers.emplace_back(n); });
  REQUIRE(names.size() == 1 + 4 * 6 + 2 * 3 + 2 + 2);
  CHECK(names[0] == "features.conv0.weight");
  CHECK(names[1] == "features.denseblock1.denselayer1.norm1.weight");
  CHECK(names[12] == "features.denseblock1.denselayer2.conv2.weight");
  CHECK(names[13] == "features.transition1.norm.weight");
  CHECK(names[15] == "features.transition1.conv.weight");
  CHECK(names[16] == "features.denseblock2.denselayer1.norm1.weight");
  CHECK(names[names.size() - 4] == "features.norm5.weight");
  CHECK(names[names.size() - 2] == "classifier.weight");
  CHECK(names.back() == "classifier.bias");
  CHECK(buffers.front() == "features.denseblock1.denselayer1.norm1.running_mean");
  CHECK(std::find(buffers.begin(), buffers.end(), "features.transition2.norm.running_var") != buffers.end());
  CHECK(buffers.back() == "features.norm5.num_batches_tracked");
}

TEST_CASE("DenseNet: torchvision's initialisation", "[dense][densenet]") {
  DenseNet<float> net;  // DenseNet-BC-100: 0.77M parameters, enough for tight moment checks
  double sum = 0, sum_sq = 0, count = 0;
  net.for_each_parameter([&](std::string_view n, const auto& v, const auto&) {
    const std::string name(n);
    if (name.find("conv") != std::string::npos) {  // kaiming_normal_: N(0, 2/fan_in), fan_in = In·k·k = columns
      const Eigen::ArrayXXd z = v.template cast<double>().array() * std::sqrt(double(v.cols()) / 2.0);
      sum += z.sum();
      sum_sq += z.square().sum();
      count += double(z.size());
    } else if (name.find("norm") != std::string::npos) {
      INFO(name);
      CHECK((v.array() == (name.ends_with("weight") ? 1.0f : 0.0f)).all());
    } else if (name == "classifier.bias") {
      CHECK(v.isZero());
    } else {
      CHECK(name == "classifier.weight");  // nn.Linear's default, U(±1/√in)
      CHECK(v.cwiseAbs().maxCoeff() <= 1.0f / std::sqrt(float(v.cols())));
    }
  });
  REQUIRE(count > 700000);
  CHECK(std::abs(sum / count) < 0.01);
  CHECK(std::abs(sum_sq / count - 1.0) < 0.01);
}

TEST_CASE("DenseNet: gradients end to end, train and eval", "[dense][densenet][gradient]") {
  for (bool training : {true, false}) {
    INFO("training " << training);
    DenseNet<double> net(
        {.block_layers = {1, 2, 1}, .growth_rate = 2, .in_channels = 1, .classes = 3, .image = {8, 8}});
    rbtest::randomise_norms(net, 131);
    net.set_training(training);
    rbtest::require_gradients(net, rbtest::random_batch<Eigen::MatrixXd>(1, 2 * 64, 132));
  }
}

TEST_CASE("DenseNet: CIFAR-sized float smoke, infer equals forward", "[dense][densenet]") {
  DenseNet<float> net({.depth = 40});
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(3, 2 * 32 * 32, 141);
  const Eigen::MatrixXf y = net.forward(x);
  REQUIRE(y.rows() == 10);
  REQUIRE(y.cols() == 2);
  REQUIRE(y.allFinite());
  REQUIRE(net.backward(Eigen::MatrixXf::Ones(10, 2)).allFinite());
  DenseNet<float>::Workspace ws;
  CHECK(net.infer(x, ws) == y);
  net.set_training(false);
  CHECK(net.infer(x, ws) == net.forward(x));
}

TEST_CASE("DenseNet: bad options are rejected", "[dense][densenet][errors]") {
  CHECK_THROWS_WITH(DenseNet<float>({.depth = 99}), rbtest::contains("DenseNet: depth must be 6n+4"));
  CHECK_THROWS_WITH(DenseNet<float>({.compression = 0}), rbtest::contains("compression must be in (0, 1]"));
  CHECK_THROWS_WITH(DenseNet<float>({.block_layers = {2, 0, 1}}), rbtest::contains("block_layers must all be >= 1"));
  CHECK_THROWS_WITH(DenseNet<float>({.growth_rate = 0}), rbtest::contains("growth_rate must be >= 1"));
  DenseNet<float> net({.depth = 10, .growth_rate = 2});
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(2, 2 * 32 * 32, 151);
  CHECK_THROWS_WITH(net.forward(x), rbtest::contains("input is 2x2048"));
}
