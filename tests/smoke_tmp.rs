mod common;
use common::*;
#[test]
fn smoke() {
    let s = Stack::start();
    let t = s.token_for("alice", &["users", "devs"]);
    let r = s.get_bearer("/hello?x=1", &t);
    eprintln!("{}", r.summary());
    eprintln!("{:?}", r.headers);
    eprintln!("{}", r.text());
    let r = s.get("/hello", &[]);
    eprintln!("{} {:?}", r.summary(), r.headers);
    panic!("show logs");
}
