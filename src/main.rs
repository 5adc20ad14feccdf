fn main() -> std::process::ExitCode {
    incident_commander::cli::main()
}
