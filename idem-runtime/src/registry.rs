//! The registry of `#[idempotent]` operations: every annotated function of the binary submits
//! its static [`Operation`] here (through `inventory`), so the runtime can list them and refuse
//! two operations with one name.
//!
//! # When duplicate names are refused
//!
//! Two operations with one name would share keys: a call of one could replay the other's
//! result. The registry is checked once per process, lazily, at the first call of any
//! `#[idempotent]` function (the result is cached: later calls pay one atomic load). From then
//! on, every call of an operation whose name is taken twice fails with
//! [`Error::Config`] naming both definitions; operations with unique names are not affected.
//! Call [`check_operations`] at startup (or in a test) to fail early instead.
//!
//! The rule is one name per operation, whatever the versions: two fns named alike with
//! different `version`s have different keys, but are nearly always a copied fn whose name was
//! not changed, so they are refused too (a version bump is made in place).
//!
//! Only `#[idempotent]` fns are registered. An [`Operation`] built by hand (a `static` for the
//! explicit API) is not checked: if it takes the name of an `#[idempotent]` fn (with the same
//! version), it computes that fn's keys and replays its records. Give hand-built operations
//! names of their own (e.g. a prefix of their module).

use std::sync::OnceLock;

use crate::Error;
use crate::operation::{Location, Operation};

/// One registered operation. Built by `#[idempotent]`; not constructible otherwise.
#[doc(hidden)]
pub struct Registration {
    operation: &'static Operation,
}

impl Registration {
    #[doc(hidden)]
    pub const fn new(operation: &'static Operation) -> Self {
        Registration { operation }
    }
}

inventory::collect!(Registration);

/// Every `#[idempotent]` operation linked into this binary, sorted by name (then file and
/// line). Each [`Operation`] tells its name, version, TTL, lease, conflict policy and
/// [`location`](Operation::location) (module, file, line).
///
/// ```
/// for op in idem_runtime::operations() {
///     let at = op.location().expect("registered operations know their location");
///     println!("{} v{} ttl={:?} lease={:?} ({}:{})", op.name(), op.version(), op.ttl(), op.lease(), at.file, at.line);
/// }
/// ```
pub fn operations() -> Vec<&'static Operation> {
    let mut all: Vec<&'static Operation> = inventory::iter::<Registration>
        .into_iter()
        .map(|r| r.operation)
        .collect();
    all.sort_by_key(|op| (op.name(), op.location().map(|l| (l.file, l.line))));
    all
}

/// The `#[idempotent]` operation named `name`, if exactly one is registered.
///
/// With it, code that did not make a call can still compute that call's key and
/// [`forget`](Operation::forget) it (see also [`key_of`] and
/// [`forget_call`], which need no knowledge of the key encoding).
pub fn operation(name: &str) -> Option<&'static Operation> {
    let mut found = inventory::iter::<Registration>
        .into_iter()
        .filter(|r| r.operation.name() == name);
    let first = found.next()?;
    match found.next() {
        None => Some(first.operation),
        Some(_) => None,
    }
}

/// Checks that no two `#[idempotent]` operations share a name; the error names every
/// definition of every duplicated name.
///
/// Two operations with one name would share keys: a call of one could replay the other's
/// result. The same check runs by itself, once per process, at the first call of any
/// `#[idempotent]` fn (cached: later calls pay one atomic load); from then on every call of an
/// operation whose name is taken twice fails with [`Error::Config`] naming both definitions,
/// while operations with unique names run as usual. Call this at startup (or in a test) to
/// fail earlier and for all operations at once.
///
/// The rule is one name per operation, whatever the versions (two fns named alike with
/// different `version`s are nearly always a copied fn whose name was not changed). Operations
/// built by hand (a `static` [`Operation`] for the explicit API) are not registered: one that
/// takes the name of an `#[idempotent]` fn computes that fn's keys and replays its records, so
/// give them names of their own.
pub fn check_operations() -> Result<(), Error> {
    let duplicates = duplicates();
    if duplicates.is_empty() {
        return Ok(());
    }
    let mut message = String::from("two or more `#[idempotent]` operations share a name");
    for (name, places) in duplicates {
        message.push_str(&duplicate_message(name, places));
    }
    Err(Error::Config(message))
}

/// Fails if `op`'s name is registered more than once. One atomic load when no name is
/// duplicated (the common case).
#[inline]
pub(crate) fn check_unique(op: &Operation) -> Result<(), Error> {
    let duplicates = duplicates();
    if duplicates.is_empty() {
        return Ok(());
    }
    check_unique_slow(op, duplicates)
}

#[cold]
fn check_unique_slow(
    op: &Operation,
    duplicates: &[(&'static str, Vec<Location>)],
) -> Result<(), Error> {
    match duplicates.iter().find(|(name, _)| *name == op.name()) {
        None => Ok(()),
        Some((name, places)) => Err(Error::Config(format!(
            "refusing to run: two `#[idempotent]` operations share a name{}",
            duplicate_message(name, places)
        ))),
    }
}

fn duplicate_message(name: &str, places: &[Location]) -> String {
    let mut out = format!("; `{name}` is defined at");
    for (i, at) in places.iter().enumerate() {
        let sep = if i == 0 { " " } else { " and " };
        out.push_str(&format!(
            "{sep}{}:{} (module `{}`)",
            at.file, at.line, at.module
        ));
    }
    out.push_str(": give each a distinct `name = \"…\"` (keys of one name are shared)");
    if let [first, rest @ ..] = places
        && !rest.is_empty()
        && rest.iter().all(|at| at.module == first.module)
        && name
            .strip_prefix(first.module)
            .is_some_and(|fn_name| fn_name.starts_with("::"))
    {
        // Default names `module::fn`, all in one module: fns nested in the bodies of other fns
        // (`module_path!()` stops at the module).
        out.push_str(&format!(
            "; all in module `{}`: a fn nested inside another fn's body gets the default name \
             `{}::<fn name>` of its module, so nested fns of one name collide: give them a \
             `name = \"…\"`",
            first.module, first.module
        ));
    }
    out
}

type Duplicates = Vec<(&'static str, Vec<Location>)>;

fn duplicates() -> &'static Duplicates {
    static DUPLICATES: OnceLock<Duplicates> = OnceLock::new();
    DUPLICATES.get_or_init(|| {
        let all = operations();
        let mut out: Duplicates = Vec::new();
        for pair in all.windows(2) {
            if pair[0].name() != pair[1].name() {
                continue;
            }
            let name = pair[0].name();
            let locations = all
                .iter()
                .filter(|op| op.name() == name)
                .map(|op| op.location().unwrap_or(UNKNOWN))
                .collect();
            if out.last().is_none_or(|(last, _)| *last != name) {
                out.push((name, locations));
            }
        }
        if !out.is_empty() {
            tracing::error!(target: "idem", duplicates = ?out.iter().map(|(n, _)| *n).collect::<Vec<_>>(), "duplicate idempotent operation names");
        }
        out
    })
}

const UNKNOWN: Location = Location {
    module: "?",
    file: "?",
    line: 0,
};

/// The key a call of an `#[idempotent]` fn would use, without running it.
///
/// Pass the call itself: `key_of(charge(req, &gateway)).await`. The function's code computes
/// the key exactly as for a real call (same name, version, scope and key expression), then
/// returns early: nothing is claimed, read or recorded, and the body does not run. If the
/// future makes no idempotent call, this is [`Error::Config`]; code the future runs before its
/// first idempotent call does run, so pass the call directly, not a wrapper. Every idempotent
/// call the future makes is refused, not only the first, whose key is answered; calls in tasks
/// it spawns are not seen.
///
/// Errors of the key itself (a failing `Serialize` impl) are returned as they would be by the
/// call.
///
/// A method needs a receiver to be called, though `self` is not part of its key (unless its
/// `key`/`scope` names it): without one at hand, [`operation`]`(name)` and
/// [`Operation::key`] compute the same key from the hashed arguments: `op.key(&arg)` for a
/// single one (as in the example below), `op.key(&Args((&a, &b)))` for several
/// ([`key::Args`](crate::key::Args): the arguments back to back, as the attribute writes them;
/// a tuple would give another key), and [`Operation::scoped_key`] with a `scope`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), idem_runtime::Error> {
/// use idem_runtime::idempotent;
///
/// #[idempotent(name = "docs.greet")]
/// async fn greet(name: String) -> Result<String, idem_runtime::Error> {
///     Ok(format!("hello {name}"))
/// }
///
/// let key = idem_runtime::key_of(greet("ada".into())).await?;
/// let op = idem_runtime::operation("docs.greet").unwrap();
/// assert_eq!(key, op.key(&"ada")?); // one argument: its encoding is the key material
/// # Ok(()) }
/// ```
pub async fn key_of<F: Future>(call: F) -> Result<crate::Key, Error> {
    crate::__private::probe::probe(call).await?.key
}

/// Deletes the record of one call of an `#[idempotent]` fn, whatever its state, so the next
/// identical call runs the body again (a manual retry). `Ok(true)` if a live record was
/// removed.
///
/// Pass the call itself, as for [`key_of`]: it is not run, only its key is computed (a call
/// made in a task the future spawns is not seen, and runs). The
/// record is removed from the store that call would use: its `store = …` option if it has
/// one, else the task's ([`with_store`](crate::with_store)) or the process-wide store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), idem_runtime::Error> {
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use idem_runtime::idempotent;
///
/// static RUNS: AtomicU32 = AtomicU32::new(0);
///
/// #[idempotent(name = "docs.send_mail")]
/// async fn send_mail(to: String) -> Result<u32, idem_runtime::Error> {
///     Ok(RUNS.fetch_add(1, Ordering::SeqCst))
/// }
///
/// send_mail("ada@example.com".into()).await?;
/// send_mail("ada@example.com".into()).await?; // replayed
/// assert!(idem_runtime::forget_call(send_mail("ada@example.com".into())).await?);
/// send_mail("ada@example.com".into()).await?; // runs again
/// assert_eq!(RUNS.load(Ordering::SeqCst), 2);
/// # Ok(()) }
/// ```
pub async fn forget_call<F: Future>(call: F) -> Result<bool, Error> {
    let probed = crate::__private::probe::probe(call).await?;
    let key = probed.key?;
    match probed.store {
        Some(store) => store.remove(&key).await,
        None => crate::operation::forget_key(probed.operation, &key).await,
    }
}
