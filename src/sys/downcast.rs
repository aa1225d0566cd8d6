//! A transport's protocol back as the concrete type it was made as
//! (`Transport::get_protocol`,
//! `DatagramTransport::get_protocol`): the one downcast `std` has no safe form
//! for, as the transport keeps the protocol as `Rc<RefCell<dyn _>>`.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

use crate::net::protocol::{DatagramProtocol, StreamProtocol};

/// `protocol` as an `Rc<RefCell<T>>` if `T` is its concrete type. `None`
/// if it is another type, or if it is mutably borrowed right now (asking
/// its type needs a shared borrow).
pub(crate) fn downcast_protocol<T: StreamProtocol>(
    protocol: Rc<RefCell<dyn StreamProtocol>>,
) -> Option<Rc<RefCell<T>>> {
    downcast_rc(protocol, |p| p)
}

/// As [`downcast_protocol`], for a datagram endpoint's protocol.
pub(crate) fn downcast_datagram_protocol<T: DatagramProtocol>(
    protocol: Rc<RefCell<dyn DatagramProtocol>>,
) -> Option<Rc<RefCell<T>>> {
    downcast_rc(protocol, |p| p)
}

/// The one downcast: `as_any` upcasts the trait object (`|p| p`) so its
/// concrete type can be asked.
fn downcast_rc<T: 'static, D: ?Sized + 'static>(
    protocol: Rc<RefCell<D>>,
    as_any: fn(&D) -> &dyn Any,
) -> Option<Rc<RefCell<T>>> {
    let is_t = {
        let borrowed = protocol.try_borrow().ok()?;
        as_any(&*borrowed).is::<T>()
    };
    if !is_t {
        return None;
    }
    let raw = Rc::into_raw(protocol) as *const RefCell<T>;
    // SAFETY: `raw` comes from `Rc::into_raw` of an `Rc<RefCell<D>>` (`D`
    // a trait object) whose value is a `RefCell<T>` (the check above: the
    // trait object's concrete type is `T`). An `Rc` to a trait object is
    // only ever made by unsizing an `Rc` of the concrete type, so the
    // allocation is an `Rc<RefCell<T>>`'s: `from_raw` with the concrete
    // type is the case `Rc::from_raw` documents as sound, and it takes
    // over the one strong count `into_raw` gave up.
    Some(unsafe { Rc::from_raw(raw) })
}
