#include "support/helpers.hpp"

#include <resblocks/core/parameter_name.hpp>

#include <sstream>
#include <stdexcept>

using resblocks::ParameterName;

TEST_CASE("ParameterName builds dotted PyTorch-style names", "[name]") {
  const ParameterName root;
  REQUIRE(root.empty());
  REQUIRE(root.child("weight").view() == "weight");
  const ParameterName n = root.child("layer1").child(std::size_t{0}).child("conv1").child("weight");
  REQUIRE(n.view() == "layer1.0.conv1.weight");
  REQUIRE(n.str() == "layer1.0.conv1.weight");
  std::ostringstream os;
  os << root.child(std::size_t{12}).child("bias");
  REQUIRE(os.str() == "12.bias");
}

TEST_CASE("ParameterName rejects names beyond its capacity with a clear error", "[name]") {
  ParameterName n;
  const std::string part(100, 'a');
  n = n.child(part).child(part);
  REQUIRE_THROWS_AS(n.child(part), std::length_error);
}
