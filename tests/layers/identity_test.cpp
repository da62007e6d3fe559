#include "support/helpers.hpp"

#include <resblocks/layers/identity.hpp>

using namespace resblocks;

TEST_CASE("Identity: forward and backward return their argument without copying", "[identity]") {
  Identity<float, 3> id;
  Batch<float, 3> x = Batch<float, 3>::Random(3, 4);
  REQUIRE(&id.forward(x) == &x);
  REQUIRE(&id.backward(x) == &x);
  Identity<float, 3>::Workspace ws;
  REQUIRE(&id.infer(x, ws) == &x);
}

TEST_CASE("Identity: gradients and size checks", "[identity][gradient]") {
  Identity<double> id;
  rbtest::require_gradients(id, rbtest::random_batch<Eigen::MatrixXd>(4, 3, 31));
  Identity<double> fixed(4);
  Eigen::MatrixXd bad(5, 1);
  REQUIRE_THROWS_AS(fixed.forward(bad), std::invalid_argument);
  REQUIRE(parameter_count(id) == 0);
}
