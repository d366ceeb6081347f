//! `signalroom serve`: the OpenVidu 2.32-compatible signalling server.

fn main() -> std::process::ExitCode {
    signalroom_server::cli::main_with_args(std::env::args_os())
}
