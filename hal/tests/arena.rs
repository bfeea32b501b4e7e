//! The arena carver: alignment, exact cost accounting, exhaustion as an error.

use spark_hal::arena::{arena_cost, Arena, ArenaExhausted, ARENA_ALIGN};

#[test]
fn carves_aligned_zeroed_buffers() {
    let mut buf = vec![0xAAu8; 1024];
    for offset in 0..ARENA_ALIGN {
        let mut a = Arena::new(&mut buf[offset..]);
        let f = a.take::<f32>(3).unwrap();
        assert_eq!(f.as_ptr() as usize % ARENA_ALIGN, 0);
        assert_eq!(f, &[0.0; 3]);
        f[2] = 1.5;
        let i = a.take::<i8>(5).unwrap();
        assert_eq!(i.as_ptr() as usize % ARENA_ALIGN, 0);
        assert_eq!(i.len(), 5);
        let u = a.take::<u32>(0).unwrap();
        assert!(u.is_empty());
    }
}

#[test]
fn cost_is_exact_and_exhaustion_is_an_error() {
    assert_eq!(arena_cost::<f32>(3), 16);
    assert_eq!(arena_cost::<i8>(17), 32);
    assert_eq!(arena_cost::<u32>(0), 0);
    #[repr(align(16))]
    struct Aligned([u8; 64]);
    let mut buf = Aligned([0; 64]);
    let mut a = Arena::new(&mut buf.0);
    assert!(a.take::<f32>(16).is_ok()); // exactly 64 bytes
    assert_eq!(a.take::<i8>(1), Err(ArenaExhausted));
    let mut buf = Aligned([0; 64]);
    let mut a = Arena::new(&mut buf.0[..63]);
    assert_eq!(a.take::<f32>(16), Err(ArenaExhausted));
}
