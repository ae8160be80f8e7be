//! The exact 2x2x2 block mean that makes one pyramid level (DESIGN.md, "The pyramid, exactly").
//!
//! Everything is built from two row operations so that the whole-volume kernel and the
//! streaming cascade share one arithmetic: `accumulate_row` adds one input plane's share of an
//! output row (one or two input rows) to a row of accumulators, and `finish_row` turns the
//! accumulators into output voxels. Integers are summed in a wide integer and rounded half
//! toward +infinity; floats are summed in f64 in the fixed order z, then y, then x (each offset
//! 0 before 1), starting from the first voxel present so that -0.0 survives; a NaN result is
//! stored as the canonical quiet NaN (positive, payload zero).

/// A voxel type the kernel accepts, with the accumulator it is summed in.
pub trait Voxel: Copy + Send + Sync + Default + 'static {
    /// Wide enough to hold the sum of eight voxels exactly (f64 for floats).
    type Acc: Copy + Send + Sync + Default + 'static;

    /// Adds this plane's share of one output row to `acc` (`first`: this is the first plane of
    /// the block, so `acc` is overwritten). `r0` is input row 2y, `r1` row 2y+1 when it exists.
    fn accumulate_row(acc: &mut [Self::Acc], r0: &[Self], r1: Option<&[Self]>, first: bool);

    /// Writes the means: `n_zy` is the number of (z, y) rows summed (1, 2 or 4); the last
    /// output voxel of a row covers one input column when the input width is odd.
    fn finish_row(acc: &[Self::Acc], out: &mut [Self], n_zy: u32, width_odd: bool);
}

macro_rules! integer_voxel {
    ($t:ty, $acc:ty) => {
        impl Voxel for $t {
            type Acc = $acc;

            #[inline]
            fn accumulate_row(acc: &mut [$acc], r0: &[$t], r1: Option<&[$t]>, first: bool) {
                let pairs = r0.len() / 2;
                let (acc_pairs, acc_tail) = acc.split_at_mut(pairs);
                let c0 = r0[..2 * pairs].chunks_exact(2);
                match (r1, first) {
                    (Some(r1), true) => {
                        let c1 = r1[..2 * pairs].chunks_exact(2);
                        for ((a, p), q) in acc_pairs.iter_mut().zip(c0).zip(c1) {
                            *a = p[0] as $acc + p[1] as $acc + q[0] as $acc + q[1] as $acc;
                        }
                    }
                    (Some(r1), false) => {
                        let c1 = r1[..2 * pairs].chunks_exact(2);
                        for ((a, p), q) in acc_pairs.iter_mut().zip(c0).zip(c1) {
                            *a += p[0] as $acc + p[1] as $acc + q[0] as $acc + q[1] as $acc;
                        }
                    }
                    (None, true) => {
                        for (a, p) in acc_pairs.iter_mut().zip(c0) {
                            *a = p[0] as $acc + p[1] as $acc;
                        }
                    }
                    (None, false) => {
                        for (a, p) in acc_pairs.iter_mut().zip(c0) {
                            *a += p[0] as $acc + p[1] as $acc;
                        }
                    }
                }
                if let Some(a) = acc_tail.first_mut() {
                    let last = r0.len() - 1;
                    let s = r0[last] as $acc + r1.map_or(0 as $acc, |r| r[last] as $acc);
                    if first {
                        *a = s;
                    } else {
                        *a += s;
                    }
                }
            }

            #[inline]
            fn finish_row(acc: &[$acc], out: &mut [$t], n_zy: u32, width_odd: bool) {
                // n = n_zy * n_x is a power of two, so floor division is an arithmetic shift
                // (also for negative sums): floor((sum + n/2) / n).
                let k = n_zy.trailing_zeros();
                let full = if width_odd { out.len() - 1 } else { out.len() };
                let (k_full, half_full) = (k + 1, (1 as $acc) << k);
                for (o, &a) in out[..full].iter_mut().zip(&acc[..full]) {
                    *o = ((a + half_full) >> k_full) as $t;
                }
                if width_odd {
                    let half = ((1 as $acc) << k) >> 1;
                    out[full] = ((acc[full] + half) >> k) as $t;
                }
            }
        }
    };
}

integer_voxel!(u8, u32);
integer_voxel!(u16, u32);
integer_voxel!(i16, i32);
integer_voxel!(u32, u64);
integer_voxel!(i32, i64);

macro_rules! float_voxel {
    ($t:ty) => {
        impl Voxel for $t {
            type Acc = f64;

            #[inline]
            fn accumulate_row(acc: &mut [f64], r0: &[$t], r1: Option<&[$t]>, first: bool) {
                // Fixed order: (y0, x0), (y0, x1), (y1, x0), (y1, x1) within this plane.
                let pairs = r0.len() / 2;
                let (acc_pairs, acc_tail) = acc.split_at_mut(pairs);
                let c0 = r0[..2 * pairs].chunks_exact(2);
                match r1 {
                    Some(r1) => {
                        let c1 = r1[..2 * pairs].chunks_exact(2);
                        for ((a, p), q) in acc_pairs.iter_mut().zip(c0).zip(c1) {
                            let mut s = if first { p[0] as f64 } else { *a + p[0] as f64 };
                            s += p[1] as f64;
                            s += q[0] as f64;
                            s += q[1] as f64;
                            *a = s;
                        }
                    }
                    None => {
                        for (a, p) in acc_pairs.iter_mut().zip(c0) {
                            let s = if first { p[0] as f64 } else { *a + p[0] as f64 };
                            *a = s + p[1] as f64;
                        }
                    }
                }
                if let Some(a) = acc_tail.first_mut() {
                    let last = r0.len() - 1;
                    let mut s = if first {
                        r0[last] as f64
                    } else {
                        *a + r0[last] as f64
                    };
                    if let Some(r1) = r1 {
                        s += r1[last] as f64;
                    }
                    *a = s;
                }
            }

            #[inline]
            fn finish_row(acc: &[f64], out: &mut [$t], n_zy: u32, width_odd: bool) {
                let full = if width_odd { out.len() - 1 } else { out.len() };
                let n_full = (2 * n_zy) as f64;
                // NaN payloads depend on operand order chosen by the compiler or the CPU, so
                // every NaN result is written as the one canonical quiet NaN.
                let canonical = |v: $t| if v.is_nan() { <$t>::NAN } else { v };
                for (o, &a) in out[..full].iter_mut().zip(&acc[..full]) {
                    *o = canonical((a / n_full) as $t);
                }
                if width_odd {
                    out[full] = canonical((acc[full] / n_zy as f64) as $t);
                }
            }
        }
    };
}

float_voxel!(f32);
float_voxel!(f64);

/// Output length of one axis: ceil(n / 2).
pub const fn half(n: usize) -> usize {
    n.div_ceil(2)
}
