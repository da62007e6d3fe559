#include "blocks/dense_test_support.hpp"

#include <resblocks/blocks/dense_layer.hpp>
#include <resblocks/layers/conv2d.hpp>

#include <string>
#include <vector>

using namespace resblocks;

TEST_CASE("DenseLayer: gradients in train and eval mode", "[dense][gradient]") {
  for (bool training : {true, false}) {
    INFO("training " << training);
    DenseLayer<double> layer(3, 2);
    rbtest::randomise_norms(layer, 11);
    layer.set_image_size({5, 4});
    layer.set_training(training);
    rbtest::require_gradients(layer, rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 20, 12));
  }
}

TEST_CASE("DenseLayer: equals BatchNorm2d-ReLU-Conv2d-BatchNorm2d-ReLU-Conv2d built from the stock layers", "[dense]") {
  // The stock layers are an independent implementation: same y, dL/dx, parameter gradients and
  // running statistics after two training steps, then the same eval-mode pass.
  const Index c = 5, k = 3;
  DenseLayer<double> layer(c, k, {.bn_size = 2});
  auto stock = rbtest::stock_dense_layer<double>(c, k, 2);
  rbtest::randomise_norms(layer, 21);
  rbtest::copy_by_name(layer, stock);
  layer.set_image_size({4, 6});
  stock.set_image_size({4, 6});
  const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(c, 3 * 24, 22);
  const Eigen::MatrixXd dy = rbtest::random_batch<Eigen::MatrixXd>(k, 3 * 24, 23);
  for (int step = 0; step < 2; ++step) {
    INFO("step " << step);
    CHECK(rbtest::rel_diff(layer.forward(x), stock.forward(x)) <= 1e-13);
    CHECK(rbtest::rel_diff(layer.backward(dy), stock.backward(dy)) <= 1e-13);
  }
  rbtest::require_same(rbtest::gradients_by_name(layer), rbtest::gradients_by_name(stock), 1e-13);
  rbtest::require_same(rbtest::buffers_by_name(layer), rbtest::buffers_by_name(stock), 1e-14);
  layer.set_training(false);
  stock.set_training(false);
  layer.zero_grad();
  stock.zero_grad();
  CHECK(rbtest::rel_diff(layer.forward(x), stock.forward(x)) <= 1e-13);
  CHECK(rbtest::rel_diff(layer.backward(dy), stock.backward(dy)) <= 1e-13);
  rbtest::require_same(rbtest::gradients_by_name(layer), rbtest::gradients_by_name(stock), 1e-13);
}

TEST_CASE("DenseLayer: names and buffers as torchvision's _DenseLayer", "[dense]") {
  DenseLayer<float> layer(6, 4);
  std::vector<std::string> names, buffers;
  layer.for_each_parameter([&](std::string_view n, const auto& v, const auto&) {
    names.emplace_back(std::string(n) + " " + std::to_string(v.rows()) + "x" + std::to_string(v.cols()));
  });
  layer.for_each_buffer([&](std::string_view n, const auto&) { buffers.emplace_back(n); });
  CHECK(names == std::vector<std::string>{"norm1.weight 6x1", "norm1.bias 6x1", "conv1.weight 16x6",
                                          "norm2.weight 16x1", "norm2.bias 16x1", "conv2.weight 4x144"});
  CHECK(buffers == std::vector<std::string>{"norm1.running_mean", "norm1.running_var", "norm1.num_batches_tracked",
                                            "norm2.running_mean", "norm2.running_var", "norm2.num_batches_tracked"});
  CHECK(layer.in_features() == 6);
  CHECK(layer.out_features() == 4);
  CHECK(layer.bottleneck_channels() == 16);
  CHECK(parameter_count(layer) == 6 * 2 + 16 * 6 + 16 * 2 + 4 * 16 * 9);
}

TEST_CASE("DenseLayer: infer equals forward, float smoke, buffers stay put", "[dense]") {
  DenseLayer<float> layer(8, 4);
  rbtest::randomise_norms(layer, 31);
  layer.set_image_size({6, 6});
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(8, 4 * 36, 32);
  const Eigen::MatrixXf dy = rbtest::random_batch<Eigen::MatrixXf>(4, 4 * 36, 33);
  DenseLayer<float>::Workspace ws;
  for (bool training : {true, false}) {
    INFO("training " << training);
    layer.set_training(training);
    const Eigen::MatrixXf y = layer.forward(x);
    REQUIRE(y.allFinite());
    CHECK(layer.infer(x, ws) == y);
    const float* y_data = layer.forward(x).data();
    const float* dx_data = layer.backward(dy).data();
    REQUIRE(layer.backward(dy).allFinite());
    for (int i = 0; i < 2; ++i) {
      CHECK(layer.forward(x).data() == y_data);
      CHECK(layer.backward(dy).data() == dx_data);
    }
  }
}

TEST_CASE("DenseLayer: errors name the layer and the shapes", "[dense][errors]") {
  CHECK_THROWS_WITH(DenseLayer<float>(0, 4), rbtest::contains("DenseLayer: in_channels must be >= 1"));
  CHECK_THROWS_WITH(DenseLayer<float>(3, 0), rbtest::contains("DenseLayer: growth_rate must be >= 1"));
  CHECK_THROWS_WITH(DenseLayer<float>(3, 2, {.bn_size = 0}), rbtest::contains("bn_size must be >= 1"));
  CHECK_THROWS_WITH(DenseLayer<float>(3, 2, {.norm = {.eps = 0}}), rbtest::contains("eps must be > 0"));
  DenseLayer<float> layer(3, 2);
  const Eigen::MatrixXf x = rbtest::random_batch<Eigen::MatrixXf>(3, 40, 41);
  CHECK_THROWS_WITH(layer.forward(x), rbtest::contains("image size not set"));
  layer.set_image_size({5, 4});
  CHECK_THROWS_WITH(layer.backward(Eigen::MatrixXf::Zero(2, 40)),
                    rbtest::contains("DenseLayer: backward() called before forward()"));
  const Eigen::MatrixXf wide = rbtest::random_batch<Eigen::MatrixXf>(4, 40, 42);
  CHECK_THROWS_WITH(layer.forward(wide),
                    rbtest::contains("DenseLayer: input is 4x40") && rbtest::contains("expected 3"));
  const Eigen::MatrixXf partial = rbtest::random_batch<Eigen::MatrixXf>(3, 30, 43);
  CHECK_THROWS_WITH(layer.forward(partial), rbtest::contains("not a whole number of 5x4 images"));
  layer.forward(x);
  CHECK_THROWS_WITH(layer.backward(Eigen::MatrixXf::Zero(2, 20)),
                    rbtest::contains("DenseLayer: output gradient is 2x20, expected 2x40"));
  DenseLayer<float> one(3, 2);
  one.set_image_size({1, 1});
  const Eigen::MatrixXf single = rbtest::random_batch<Eigen::MatrixXf>(3, 1, 44);
  CHECK_THROWS_WITH(one.forward(single), rbtest::contains("training needs more than one value per channel"));
  one.set_training(false);
  CHECK(one.forward(single).allFinite());
}

TEST_CASE("DenseLayer: its 48 to 12 channel conv2 equals the generic-path convolutions it splits into", "[dense]") {
  // conv2 of k = 12 copies its patches in runs of 48 channels (forward) and 12 (the backward's patches
  // of dL/dy), with fixed-length copies; splitting the input channels (runs of 24) or the output
  // channels (runs of 6) goes through the run-time-length copies instead.
  const ImageSize image{5, 6};
  const Index P = 2 * image.area();
  Conv2d<double> full(48, 12, 3, {.padding = 1, .bias = false});
  Conv2d<double> in_a(24, 12, 3, {.padding = 1, .bias = false}), in_b(24, 12, 3, {.padding = 1, .bias = false});
  Conv2d<double> out_a(48, 6, 3, {.padding = 1, .bias = false}), out_b(48, 6, 3, {.padding = 1, .bias = false});
  for (auto* c : {&full, &in_a, &in_b, &out_a, &out_b}) c->set_image_size(image);
  in_a.weight() = full.weight().leftCols(24 * 9);  // PyTorch order: column tap + 9·input channel
  in_b.weight() = full.weight().rightCols(24 * 9);
  out_a.weight() = full.weight().topRows(6);
  out_b.weight() = full.weight().bottomRows(6);
  const Eigen::MatrixXd x = rbtest::random_batch<Eigen::MatrixXd>(48, P, 161);
  const Eigen::MatrixXd dy = rbtest::random_batch<Eigen::MatrixXd>(12, P, 162);
  const Eigen::MatrixXd xa = x.topRows(24), xb = x.bottomRows(24);
  const Eigen::MatrixXd y = full.forward(x);
  CHECK(rbtest::rel_diff(y, in_a.forward(xa) + in_b.forward(xb)) <= 1e-13);
  Eigen::MatrixXd split(12, P);
  split << out_a.forward(x), out_b.forward(x);
  CHECK(rbtest::rel_diff(y, split) <= 1e-13);
  const Eigen::MatrixXd dx = full.backward(dy);
  const Eigen::MatrixXd dy_a = dy.topRows(6), dy_b = dy.bottomRows(6);
  CHECK(rbtest::rel_diff(dx, out_a.backward(dy_a) + out_b.backward(dy_b)) <= 1e-13);
  Eigen::MatrixXd dw(12, 48 * 9);
  dw << out_a.weight_grad(), out_b.weight_grad();
  CHECK(rbtest::rel_diff(full.weight_grad(), dw) <= 1e-13);
}
