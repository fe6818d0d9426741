//! A worker process for the cross-process and fault tests; see `idem_tests::worker`.

fn main() {
    let args = match idem_tests::worker::Args::parse(std::env::args()) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("idem_worker: {error}");
            std::process::exit(64);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(idem_tests::worker::main(args));
    std::process::exit(code);
}
