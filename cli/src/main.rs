use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = crossdeploy_cli::Cli::parse();
    std::process::ExitCode::from(crossdeploy_cli::run(cli, &mut std::io::stdout(), &mut std::io::stderr()).await)
}
