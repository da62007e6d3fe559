// CrossEntropyLoss: PyTorch fixtures (tests/reference/make_loss_fixtures.py), finite differences,
// argmax hits, errors, NaN, thread-count independence.

#include "support/helpers.hpp"
#include "support/parity.hpp"

#include <resblocks/core/threading.hpp>
#include <resblocks/train/cross_entropy_loss.hpp>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

using namespace resblocks;
using resblocks_tests::check_close;
using resblocks_tests::Fixture;
using resblocks_tests::load_fixture;

namespace {

struct Variant {
  const char* name;
  double smoothing;
  Reduction reduction;
};
constexpr Variant k_variants[] = {{"mean", 0.0, Reduction::mean},
                                  {"sum", 0.0, Reduction::sum},
                                  {"smooth_mean", 0.1, Reduction::mean},
                                  {"smooth_sum", 0.1, Reduction::sum}};

std::vector<int> fixture_labels(const Fixture& f, const std::string& tensor = "labels") {
  const Eigen::MatrixXd& m = f.matrix(tensor);
  REQUIRE(m.rows() == 1);
  std::vector<int> labels;
  for (Index j = 0; j < m.cols(); ++j) {
    REQUIRE(m(0, j) == std::floor(m(0, j)));
    labels.push_back(static_cast<int>(m(0, j)));
  }
  return labels;
}

/// Loss and gradient of every variant against the fixture, and correct() against its argmax.
template <class S, int Classes>
void check_fixture(const std::string& file) {
  const Fixture f = load_fixture(file);
  const auto logits = resblocks_tests::fixture_batch<Batch<S, Classes>>(f, "logits");
  const std::vector<int> labels = fixture_labels(f);
  const std::vector<int> argmax = fixture_labels(f, "argmax");
  Index expected_correct = 0;
  for (std::size_t j = 0; j < labels.size(); ++j) expected_correct += argmax[j] == labels[j] ? 1 : 0;
  const double tol = resblocks_tests::tolerance<S>;
  for (const Variant& v : k_variants) {
    INFO("variant " << v.name);
    CrossEntropyLoss<S, Classes> loss({.label_smoothing = v.smoothing, .reduction = v.reduction});
    const S value = loss.forward(logits, labels);
    check_close(f, std::string("loss.") + v.name, Eigen::Matrix<S, 1, 1>::Constant(value), tol, "forward");
    check_close(f, std::string("grad.") + v.name, loss.backward(), tol, "backward");
    REQUIRE(loss.correct() == expected_correct);
    REQUIRE(loss.probabilities().allFinite());
  }
}

/// Central differences of the loss over every logit, compared with backward().
template <int Classes>
void check_finite_differences(Index classes, Index n, CrossEntropyOptions options, std::uint64_t seed) {
  using M = Batch<double, Classes>;
  M logits = rbtest::random_batch<M>(classes, n, seed);
  logits *= 3.0;
  std::vector<int> labels;
  for (Index j = 0; j < n; ++j) labels.push_back(static_cast<int>((j * 7 + static_cast<Index>(seed)) % classes));
  CrossEntropyLoss<double, Classes> loss(options);
  loss.forward(logits, labels);
  const M analytic = loss.backward();
  const double h = 1e-6;
  M numeric(classes, n);
  for (Index j = 0; j < n; ++j)
    for (Index c = 0; c < classes; ++c) {
      const double keep = logits(c, j);
      logits(c, j) = keep + h;
      const double up = loss.forward(logits, labels);
      logits(c, j) = keep - h;
      const double down = loss.forward(logits, labels);
      logits(c, j) = keep;
      numeric(c, j) = (up - down) / (2 * h);
    }
  INFO("classes " << classes << ", n " << n << ", smoothing " << options.label_smoothing << ", sum "
                  << (options.reduction == Reduction::sum));
  const double error = (analytic - numeric).cwiseAbs().maxCoeff();
  INFO("max |analytic - numeric| = " << error << ", max |gradient| = " << numeric.cwiseAbs().maxCoeff());
  REQUIRE(numeric.cwiseAbs().maxCoeff() > 1e-3);  // a real gradient, not all zeros
  REQUIRE(error <= 1e-7 + 1e-5 * numeric.cwiseAbs().maxCoeff());
}

}  // namespace

TEST_CASE("CrossEntropyLoss: PyTorch fixture, smoothing 0 and 0.1, mean and sum", "[loss][cross_entropy][parity]") {
  check_fixture<double, Dynamic>("loss_cross_entropy.txt");
  check_fixture<double, 5>("loss_cross_entropy.txt");
  check_fixture<float, Dynamic>("loss_cross_entropy.txt");
  check_fixture<float, 5>("loss_cross_entropy.txt");
}

TEST_CASE("CrossEntropyLoss: logits of +-1000 do not overflow, PyTorch fixture", "[loss][cross_entropy][parity]") {
  check_fixture<double, Dynamic>("loss_cross_entropy_large.txt");
  check_fixture<double, 4>("loss_cross_entropy_large.txt");
  check_fixture<float, Dynamic>("loss_cross_entropy_large.txt");
  check_fixture<float, 4>("loss_cross_entropy_large.txt");
}

TEST_CASE("CrossEntropyLoss: finite-difference gradients in double", "[loss][cross_entropy][gradient]") {
  for (const Variant& v : k_variants) {
    const CrossEntropyOptions o{.label_smoothing = v.smoothing, .reduction = v.reduction};
    check_finite_differences<Dynamic>(6, 5, o, 21);
    check_finite_differences<3>(3, 4, o, 22);
    check_finite_differences<Dynamic>(4, 1, o, 23);  // batch of one
  }
  check_finite_differences<Dynamic>(5, 3, {.label_smoothing = 1.0}, 24);  // uniform target only
}

TEST_CASE("CrossEntropyLoss: hand-computed values and sum equals n times mean", "[loss][cross_entropy]") {
  // Two equal logits: p = 1/2 each, loss = log 2; with ε: (1-ε)·log 2 + ε·log 2 = log 2.
  Eigen::MatrixXd z(2, 1);
  z << 3.0, 3.0;
  const std::vector<int> y{1};
  CrossEntropyLoss<double> plain;
  REQUIRE(plain.forward(z, y) == Approx(std::log(2.0)).epsilon(1e-15));
  Eigen::MatrixXd g = plain.backward();
  REQUIRE(g(0, 0) == Approx(0.5).epsilon(1e-15));
  REQUIRE(g(1, 0) == Approx(-0.5).epsilon(1e-15));
  // Logits (0, log 3): p = (1/4, 3/4); label 0: nll = log 4; smoothing 0.2: 0.8·log 4 + 0.2·(log 4 + log 4/3)/2.
  z << 0.0, std::log(3.0);
  CrossEntropyLoss<double> smooth({.label_smoothing = 0.2});
  const std::vector<int> y0{0};
  const double expected = 0.8 * std::log(4.0) + 0.2 * 0.5 * (std::log(4.0) + std::log(4.0 / 3.0));
  REQUIRE(smooth.forward(z, y0) == Approx(expected).epsilon(1e-14));
  g = smooth.backward();  // softmax - (0.8·onehot + 0.1)
  REQUIRE(g(0, 0) == Approx(0.25 - 0.9).epsilon(1e-14));
  REQUIRE(g(1, 0) == Approx(0.75 - 0.1).epsilon(1e-14));

  const auto logits = rbtest::random_batch<Eigen::MatrixXd>(7, 9, 31);
  std::vector<int> labels{0, 1, 2, 3, 4, 5, 6, 0, 1};
  CrossEntropyLoss<double> mean, sum({.reduction = Reduction::sum});
  const double m = mean.forward(logits, labels), s = sum.forward(logits, labels);
  REQUIRE(s == Approx(9 * m).epsilon(1e-14));
  REQUIRE((sum.backward() - 9 * mean.backward()).cwiseAbs().maxCoeff() < 1e-15);
  REQUIRE(mean.loss() == m);
  // Each column of the softmax sums to 1.
  REQUIRE((mean.probabilities().colwise().sum().array() - 1.0).abs().maxCoeff() < 1e-15);
}

TEST_CASE("CrossEntropyLoss: correct counts argmax hits, ties go to the first maximum", "[loss][cross_entropy]") {
  Eigen::MatrixXf z(3, 4);
  z.col(0) << 1, 3, 3;  // tie between 1 and 2: argmax 1
  z.col(1) << 1, 3, 3;
  z.col(2) << 2, 2, 2;     // all equal: argmax 0
  z.col(3) << -5, -1, -7;  // argmax 1
  CrossEntropyLoss<float> loss;
  loss.forward(z, std::vector<int>{1, 2, 0, 1});
  REQUIRE(loss.correct() == 3);  // column 1's label 2 is the second maximum
  loss.forward(z, std::vector<int>{2, 2, 1, 0});
  REQUIRE(loss.correct() == 0);
}

TEST_CASE("CrossEntropyLoss: bad labels and options throw, naming the problem", "[loss][cross_entropy][errors]") {
  CrossEntropyLoss<double, 5> loss;
  const auto z = rbtest::random_batch<Batch<double, 5>>(5, 3, 41);
  REQUIRE_THROWS_AS(loss.backward(), std::logic_error);
  REQUIRE_THROWS_AS(loss.forward(z, std::vector<int>{0, 1}), std::invalid_argument);
  REQUIRE_THROWS_WITH(loss.forward(z, std::vector<int>{0, 1}),
                      rbtest::contains("CrossEntropyLoss") && rbtest::contains("2 labels") && rbtest::contains("5x3"));
  REQUIRE_THROWS_AS(loss.forward(z, std::vector<int>{0, 1, 5}), std::invalid_argument);
  REQUIRE_THROWS_WITH(loss.forward(z, std::vector<int>{0, 1, 5}),
                      rbtest::contains("CrossEntropyLoss") && rbtest::contains("label 5") &&
                          rbtest::contains("index 2") && rbtest::contains("5 classes"));
  REQUIRE_THROWS_WITH(loss.forward(z, std::vector<int>{0, -1, 4}),
                      rbtest::contains("label -1") && rbtest::contains("index 1"));
  REQUIRE_THROWS_AS(loss.backward(), std::logic_error);  // the failed calls did not count as a forward
  REQUIRE_THROWS_AS(loss.forward(Batch<double, 5>(5, 0), std::vector<int>{}), std::invalid_argument);
  REQUIRE_THROWS_AS(CrossEntropyLoss<float>().forward(Eigen::MatrixXf(0, 2), std::vector<int>{0, 0}),
                    std::invalid_argument);
  for (const double eps : {-0.1, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    REQUIRE_THROWS_AS(CrossEntropyLoss<float>({.label_smoothing = eps}), std::invalid_argument);
    REQUIRE_THROWS_WITH(CrossEntropyLoss<float>({.label_smoothing = eps}), rbtest::contains("label_smoothing"));
  }
  REQUIRE_NOTHROW(CrossEntropyLoss<float>({.label_smoothing = 1.0}));
}

TEST_CASE("CrossEntropyLoss: NaN or infinite logits give a NaN loss, no crash", "[loss][cross_entropy]") {
  Eigen::MatrixXd z = rbtest::random_batch<Eigen::MatrixXd>(4, 3, 51);
  const std::vector<int> labels{0, 1, 2};
  CrossEntropyLoss<double> loss({.label_smoothing = 0.1});
  z(2, 1) = std::numeric_limits<double>::quiet_NaN();
  REQUIRE(std::isnan(loss.forward(z, labels)));
  REQUIRE_NOTHROW(loss.backward());
  z(2, 1) = std::numeric_limits<double>::infinity();
  REQUIRE(std::isnan(loss.forward(z, labels)));
  z(0, 0) = std::numeric_limits<double>::quiet_NaN();  // NaN in the first row
  z(2, 1) = 0;
  REQUIRE(std::isnan(loss.forward(z, labels)));
  // Without smoothing, -inf on a class that is not the label is a valid logit (probability 0).
  z(0, 0) = 0;
  z(3, 2) = -std::numeric_limits<double>::infinity();
  CrossEntropyLoss<double> plain;
  REQUIRE(std::isfinite(plain.forward(z, labels)));
  REQUIRE(plain.backward().allFinite());
}

TEST_CASE("CrossEntropyLoss: float follows double", "[loss][cross_entropy][float]") {
  const Eigen::MatrixXf zf = (rbtest::random_batch<Eigen::MatrixXd>(10, 64, 61) * 4.0).cast<float>();
  std::vector<int> labels;
  for (int j = 0; j < 64; ++j) labels.push_back((j * 3) % 10);
  CrossEntropyLoss<double> d({.label_smoothing = 0.05});
  CrossEntropyLoss<float> f({.label_smoothing = 0.05});
  const double ld = d.forward(zf.cast<double>(), labels);
  const float lf = f.forward(zf, labels);
  REQUIRE(std::abs(double(lf) - ld) < 1e-6 * std::abs(ld));
  REQUIRE(rbtest::rel_diff(f.backward(), d.backward()) < 1e-7);
  REQUIRE(f.correct() == d.correct());
}

TEST_CASE("CrossEntropyLoss: same bits for 1 and 2 threads, buffers reused", "[loss][cross_entropy][threads]") {
  const Index classes = 100, n = 3000;  // large enough for the column loop to run in parallel
  const Eigen::MatrixXf z = rbtest::random_batch<Eigen::MatrixXf>(classes, n, 71) * 8.0f;
  std::vector<int> labels;
  for (Index j = 0; j < n; ++j) labels.push_back(static_cast<int>((j * 13) % classes));
  const int threads = num_threads();
  CrossEntropyLoss<float> loss({.label_smoothing = 0.1});
  set_num_threads(1);
  const float one = loss.forward(z, labels);
  const Eigen::MatrixXf g1 = loss.backward();
  const Index c1 = loss.correct();
  const float* probs = loss.probabilities().data();
  const float* grad = loss.backward().data();
  set_num_threads(2);
  const float two = loss.forward(z, labels);
  const Eigen::MatrixXf& g2 = loss.backward();
  set_num_threads(threads);
  REQUIRE(one == two);
  REQUIRE(g1 == g2);
  REQUIRE(c1 == loss.correct());
  REQUIRE(loss.probabilities().data() == probs);  // same shape: the buffers were reused
  REQUIRE(g2.data() == grad);
}
