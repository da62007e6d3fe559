#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

using namespace resblocks;

TEST_CASE("Shortcut: zero-padding subsamples and appends zero channels", "[shortcut]") {
  Shortcut<double> s(2, 3, 2, ShortcutKind::zero_pad);
  REQUIRE(s.set_image_size({3, 4}) == ImageSize{2, 2});
  Eigen::MatrixXd x(2, 12);
  for (Index j = 0; j < 12; ++j) x.col(j) << j, 100 + j;
  const Eigen::MatrixXd& y = s.forward(x);
  // kept pixels (h, w) in {0, 2} x {0, 2}: columns 0, 2, 8, 10
  Eigen::MatrixXd expected(3, 4);
  expected << 0, 2, 8, 10, 100, 102, 108, 110, 0, 0, 0, 0;
  REQUIRE(y == expected);
  rbtest::require_gradients(s, rbtest::random_batch<Eigen::MatrixXd>(2, 2 * 12, 1));
}

TEST_CASE("Shortcut: projection, identity and none, parameters and errors", "[shortcut]") {
  Shortcut<double> p(3, 4, 2, ShortcutKind::projection);
  p.set_image_size({5, 5});
  rbtest::require_gradients(p, rbtest::random_batch<Eigen::MatrixXd>(3, 2 * 25, 2));
  REQUIRE(parameter_count(p) == 12 + 8);
  Shortcut<double> id(3, 3);
  const auto x = rbtest::random_batch<Eigen::MatrixXd>(3, 8, 3);
  REQUIRE(&id.forward(x) == &x);  // no copy
  Shortcut<double> none(3, 3, 1, ShortcutKind::none);
  none.set_image_size({2, 2});
  REQUIRE(none.forward(x).isZero());
  REQUIRE(none.backward(x).isZero());
  REQUIRE_THROWS_WITH(Shortcut<float>(4, 2, 1, ShortcutKind::zero_pad), rbtest::contains("cannot reduce channels"));
  REQUIRE_THROWS_AS(Shortcut<float>(4, 4, 0), std::invalid_argument);
}
