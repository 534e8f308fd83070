fn main() {
    std::process::exit(mab::main());
}
