// The plain Catch2 2 main; the implementation is in catch_impl.cpp.
namespace rbtest {
int run_catch_session(int argc, char** argv);
}

int main(int argc, char** argv) { return rbtest::run_catch_session(argc, argv); }
