//! The `siprox` binary: everything lives in the library; see `siprox --help`.

fn main() -> std::process::ExitCode {
    siprox::cli::main()
}
