#include "blocks/dense_test_support.hpp"

#include <resblocks/blocks/transition.hpp>
#include <resblocks/layers/avg_pool2d.hpp>

#include <string>
#include <vector>

using namespace resblocks;

TEST_CASE("Transition: gradients in train and eval mode", "[dense][gradient]") {
  for (bool training : {true, false}) {
    INFO("training " << training);
    Transition<double> t(4, 2);
    rbtest::randomise_norms(t, 101);
    REQUIRE(t.set_image_size({5, 4}) == ImageSize{2, 2});
    t.set_training(training);
    rbtest::require_gradients(t, rbtest::random_batch<Eigen::MatrixXd>(4, 2 * 20, 102));
  }
}

TEST_CASE("Transition: pooling before the 1x1 conv equals torchvision's conv-then-pool order", "[dense]") {
  // The reference runs the stock layers in _Transition's order, BN-ReLU-Conv1x1-AvgPool2d.
  using Stock = Sequential<BatchNorm2d<double>, ReLU<double>, Conv2d<double>, AvgPool2d<double>>;
  Transition<double> t(6, 3);
  Stock stock(BatchNorm2d<double>(6), ReLU<double>(), Conv2d<double>(6, 3, 1, {.bias = false}),
              AvgPool2d<double>(2, 2));
  stock.set_child_names({"norm", "", "conv", ""});
  rbtest::randomise_norms(t, 111);
  rbtest::copy_by_name(t, stock);
  REQUIRE(t.set_image_size({7, 6}) == ImageSize{3, 3});
  REQUIRE(stock.set_image_size({7, 6}) == ImageSize{3, 3});
  const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(6, 3 * 42, 112);
  const Eigen::MatrixXd dy = rbtest::random_batch<Eigen::MatrixXd>(3, 3 * 9, 113);
  for (bool training : {true, false}) {
    INFO("training " << training);
    t.set_training(training);
    stock.set_training(training);
    t.zero_grad();
    stock.zero_grad();
    CHECK(rbtest::rel_diff(t.forward(x), stock.forward(x)) <= 1e-13);
    CHECK(rbtest::rel_diff(t.backward(dy), stock.backward(dy)) <= 1e-13);
    rbtest::require_same(rbtest::gradients_by_name(t), rbtest::gradients_by_name(stock), 1e-13);
    rbtest::require_same(rbtest::buffers_by_name(t), rbtest::buffers_by_name(stock), 1e-14);
  }
}

TEST_CASE("Transition: PyTorch parity with torchvision's _Transition (double and float)", "[dense][parity]") {
  Transition<double> d(6, 3);
  rbtest::check_against_fixture(d, "dense_transition.txt");
  Transition<float> f(6, 3);
  rbtest::check_against_fixture(f, "dense_transition.txt");
}

TEST_CASE("Transition: names as torchvision's _Transition, float smoke", "[dense]") {
  Transition<float> t(8, 4);
  std::vector<std::string> names, buffers;
  t.for_each_parameter([&](std::string_view n, const auto&, const auto&) { names.emplace_back(n); });
  t.for_each_buffer([&](std::string_view n, const auto&) { buffers.emplace_back(n); });
  CHECK(names == std::vector<std::string>{"norm.weight", "norm.bias", "conv.weight"});
  CHECK(buffers == std::vector<std::string>{"norm.running_mean", "norm.running_var", "norm.num_batches_tracked"});
  CHECK(t.in_features() == 8);
  CHECK(t.out_features() == 4);
  REQUIRE(t.set_image_size({8, 8}) == ImageSize{4, 4});
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(8, 2 * 64, 121);
  const Eigen::MatrixXf y = t.forward(x);
  CHECK(y.rows() == 4);
  CHECK(y.cols() == 2 * 16);
  CHECK(t.backward(Eigen::MatrixXf::Ones(4, 32)).allFinite());
  Transition<float>::Workspace ws;
  CHECK(t.infer(x, ws) == y);
  const Eigen::MatrixXf wrong = rbtest::random_batch<Eigen::MatrixXf>(7, 2 * 64, 122);
  CHECK_THROWS_WITH(t.forward(wrong), rbtest::contains("input is 7x128"));
}
