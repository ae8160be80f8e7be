//! Whole-volume and streaming (plane-by-plane) downsampling built on the row operations.

use std::borrow::Cow;

use numpy::ndarray::{ArrayView2, ArrayView3, Axis};
use rayon::prelude::*;

use crate::kernel::{half, Voxel};

/// Output rows handed to one rayon task: enough work to amortise scheduling, small enough to
/// balance two to a few dozen cores.
const MIN_ROWS_PER_TASK: usize = 8;

/// Row `y` of a plane as a slice: borrowed when the row is contiguous, else copied.
fn row<'a, T: Voxel>(plane: &ArrayView2<'a, T>, y: usize) -> Cow<'a, [T]> {
    let r = (*plane).index_axis_move(Axis(0), y);
    match r.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(r.to_vec()),
    }
}

/// One pyramid level of a whole `(z, y, x)` volume into `out` (C order, `ceil(n/2)` per axis).
pub fn downsample_volume<T: Voxel>(input: ArrayView3<'_, T>, out: &mut [T]) {
    let (nz, ny, nx) = input.dim();
    let (oy, ox) = (half(ny), half(nx));
    assert_eq!(
        out.len(),
        half(nz) * oy * ox,
        "output length does not match the input shape"
    );
    out.par_chunks_mut(ox)
        .with_min_len(MIN_ROWS_PER_TASK)
        .enumerate()
        .for_each_init(
            || vec![T::Acc::default(); ox],
            |acc, (i, out_row)| {
                let (zo, yo) = (i / oy, i % oy);
                let mut n_zy = 0;
                for dz in 0..2 {
                    let zi = 2 * zo + dz;
                    if zi >= nz {
                        break;
                    }
                    let plane = input.index_axis(Axis(0), zi);
                    let r0 = row(&plane, 2 * yo);
                    let r1 = (2 * yo + 1 < ny).then(|| row(&plane, 2 * yo + 1));
                    T::accumulate_row(acc, &r0, r1.as_deref(), dz == 0);
                    n_zy += if r1.is_some() { 2 } else { 1 };
                }
                T::finish_row(acc, out_row, n_zy, nx % 2 == 1);
            },
        );
}

/// One level of the streaming cascade: accumulates pairs of input planes into one output plane.
#[derive(Clone)]
struct Level<T: Voxel> {
    in_shape: (usize, usize),
    out_shape: (usize, usize),
    acc: Vec<T::Acc>,
    pending: bool,
    produced: usize,
}

impl<T: Voxel> Level<T> {
    fn new(in_shape: (usize, usize)) -> Self {
        let out_shape = (half(in_shape.0), half(in_shape.1));
        Level {
            in_shape,
            out_shape,
            acc: vec![T::Acc::default(); out_shape.0 * out_shape.1],
            pending: false,
            produced: 0,
        }
    }

    fn add_plane(&mut self, plane: &ArrayView2<'_, T>, first: bool) {
        let ny = self.in_shape.0;
        self.acc
            .par_chunks_mut(self.out_shape.1)
            .with_min_len(MIN_ROWS_PER_TASK)
            .enumerate()
            .for_each(|(yo, acc)| {
                let r0 = row(plane, 2 * yo);
                let r1 = (2 * yo + 1 < ny).then(|| row(plane, 2 * yo + 1));
                T::accumulate_row(acc, &r0, r1.as_deref(), first);
            });
    }

    fn finish(&mut self, n_z: u32, out: &mut [T]) -> usize {
        let (ny, nx) = self.in_shape;
        out.par_chunks_mut(self.out_shape.1)
            .zip(self.acc.par_chunks(self.out_shape.1))
            .with_min_len(MIN_ROWS_PER_TASK)
            .enumerate()
            .for_each(|(yo, (o, a))| {
                let n_y = if 2 * yo + 1 < ny { 2 } else { 1 };
                T::finish_row(a, o, n_z * n_y, nx % 2 == 1);
            });
        self.pending = false;
        self.produced += 1;
        self.produced - 1
    }

    /// Takes the next input plane; returns the z index of the output plane it completed.
    fn consume(&mut self, plane: &ArrayView2<'_, T>, out: &mut [T]) -> Option<usize> {
        if self.pending {
            self.add_plane(plane, false);
            Some(self.finish(2, out))
        } else {
            self.add_plane(plane, true);
            self.pending = true;
            None
        }
    }
}

/// All pyramid levels at once from planes fed in z order, holding one accumulator plane per
/// level. The caller owns one output plane buffer per level; `push` and `finish` report which
/// levels they wrote as `(level, z)` with level 1 the first downsampled level.
#[derive(Clone)]
pub struct Cascade<T: Voxel> {
    in_shape: (usize, usize),
    levels: Vec<Level<T>>,
}

impl<T: Voxel> Cascade<T> {
    /// A cascade for planes of `shape` (y, x) with `n_levels` levels below the source.
    pub fn new(shape: (usize, usize), n_levels: usize) -> Self {
        let mut levels = Vec::with_capacity(n_levels);
        let mut s = shape;
        for _ in 0..n_levels {
            let level = Level::new(s);
            s = level.out_shape;
            levels.push(level);
        }
        Cascade {
            in_shape: shape,
            levels,
        }
    }

    /// The (y, x) shape of the source planes.
    pub fn input_shape(&self) -> (usize, usize) {
        self.in_shape
    }

    /// The (y, x) shape of each output level, level 1 first.
    pub fn level_shapes(&self) -> Vec<(usize, usize)> {
        self.levels.iter().map(|l| l.out_shape).collect()
    }

    /// Feeds output plane `from` (0-based level index) on down the cascade.
    fn cascade(&mut self, from: usize, outs: &mut [&mut [T]], done: &mut Vec<(usize, usize)>) {
        for l in from + 1..self.levels.len() {
            let (lower, upper) = outs.split_at_mut(l);
            let plane = ArrayView2::from_shape(self.levels[l - 1].out_shape, &*lower[l - 1])
                .expect("output buffer shape checked by the caller");
            match self.levels[l].consume(&plane, upper[0]) {
                Some(z) => done.push((l + 1, z)),
                None => break,
            }
        }
    }

    /// Adds the next source plane; returns the `(level, z)` output planes now complete in `outs`.
    pub fn push(&mut self, plane: ArrayView2<'_, T>, outs: &mut [&mut [T]]) -> Vec<(usize, usize)> {
        let mut done = Vec::new();
        if let Some(first) = self.levels.first_mut() {
            if let Some(z) = first.consume(&plane, outs[0]) {
                done.push((1, z));
                self.cascade(0, outs, &mut done);
            }
        }
        done
    }

    /// Flushes half-filled blocks at the end of the volume (an odd number of planes).
    pub fn finish(&mut self, outs: &mut [&mut [T]]) -> Vec<(usize, usize)> {
        let mut done = Vec::new();
        for l in 0..self.levels.len() {
            if self.levels[l].pending {
                let z = self.levels[l].finish(1, outs[l]);
                done.push((l + 1, z));
                self.cascade(l, outs, &mut done);
            }
        }
        done
    }

    /// Output planes produced so far, per level.
    pub fn produced(&self) -> Vec<usize> {
        self.levels.iter().map(|l| l.produced).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use numpy::ndarray::{s, Array3};

    /// The definition, one output voxel at a time, integer sums in i128.
    fn reference_int(v: &Array3<i64>) -> Array3<i64> {
        let (nz, ny, nx) = v.dim();
        Array3::from_shape_fn((half(nz), half(ny), half(nx)), |(z, y, x)| {
            let block = v.slice(s![
                2 * z..(2 * z + 2).min(nz),
                2 * y..(2 * y + 2).min(ny),
                2 * x..(2 * x + 2).min(nx)
            ]);
            let n = block.len() as i128;
            let sum: i128 = block.iter().map(|&a| a as i128).sum();
            (sum + n / 2).div_euclid(n) as i64
        })
    }

    fn run<T: Voxel>(v: &Array3<T>) -> Array3<T> {
        let (nz, ny, nx) = v.dim();
        let shape = (half(nz), half(ny), half(nx));
        let mut out = vec![T::default(); shape.0 * shape.1 * shape.2];
        downsample_volume(v.view(), &mut out);
        Array3::from_shape_vec(shape, out).unwrap()
    }

    fn pseudo_random(shape: (usize, usize, usize), lo: i64, hi: i64, seed: u64) -> Array3<i64> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        Array3::from_shape_fn(shape, |_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (state >> 33) as i64;
            lo + r.rem_euclid(hi - lo + 1)
        })
    }

    #[test]
    fn odd_and_one_voxel_axes_match_the_definition() {
        for &shape in &[
            (1, 1, 1),
            (1, 1, 7),
            (1, 6, 1),
            (5, 1, 1),
            (3, 5, 7),
            (4, 4, 4),
            (9, 2, 3),
        ] {
            let v = pseudo_random(shape, 0, 65535, shape.0 as u64 * 31 + shape.2 as u64);
            let got = run(&v.mapv(|a| a as u16));
            assert_eq!(got.mapv(|a| a as i64), reference_int(&v), "shape {shape:?}");
        }
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        for &value in &[u32::MAX, 0] {
            let got = run(&Array3::from_elem((3, 3, 3), value));
            assert!(got.iter().all(|&a| a == value));
        }
        for &value in &[i32::MIN, i32::MAX] {
            let got = run(&Array3::from_elem((3, 5, 3), value));
            assert!(got.iter().all(|&a| a == value));
        }
        let v = pseudo_random((5, 5, 5), i16::MIN as i64, i16::MAX as i64, 9);
        assert_eq!(
            run(&v.mapv(|a| a as i16)).mapv(|a| a as i64),
            reference_int(&v)
        );
    }

    #[test]
    fn signed_means_round_half_toward_plus_infinity() {
        let v = Array3::from_shape_vec((1, 1, 8), vec![-1i16, 0, -2, -1, 0, 1, -3, -2]).unwrap();
        assert_eq!(run(&v).into_raw_vec_and_offset().0, vec![0, -1, 1, -2]);
        // a block of 8 summing to -4 is exactly -0.5: rounds to 0; -12/8 = -1.5 rounds to -1
        let v = Array3::from_shape_vec(
            (2, 2, 4),
            vec![
                -1i32, -1, -2, -2, -1, -1, -2, -2, 0, 0, -1, -1, 0, 0, -1, -1,
            ],
        )
        .unwrap();
        assert_eq!(run(&v).into_raw_vec_and_offset().0, vec![0, -1]);
    }

    #[test]
    fn nan_gives_canonical_nan_and_infinities_follow_ieee() {
        let mut v = Array3::<f32>::zeros((2, 2, 6));
        v[[1, 1, 0]] = f32::NAN;
        v[[0, 0, 2]] = f32::INFINITY;
        v[[0, 0, 4]] = f32::INFINITY;
        v[[1, 0, 5]] = f32::NEG_INFINITY;
        let got = run(&v);
        assert_eq!(got[[0, 0, 0]].to_bits(), f32::NAN.to_bits());
        assert_eq!(got[[0, 0, 1]], f32::INFINITY);
        assert_eq!(got[[0, 0, 2]].to_bits(), f32::NAN.to_bits());
    }

    #[test]
    fn floats_sum_in_the_fixed_order() {
        // z0: 1e16, 1, 1, 1 then z1: -1e16, 1, 1, 1 summed left to right in f64
        let v = Array3::from_shape_vec((2, 2, 2), vec![1e16, 1.0, 1.0, 1.0, -1e16, 1.0, 1.0, 1.0])
            .unwrap();
        let mut s = 1e16f64;
        for a in [1.0, 1.0, 1.0, -1e16, 1.0, 1.0, 1.0] {
            s += a;
        }
        assert_eq!(run(&v)[[0, 0, 0]], s / 8.0);
    }

    #[test]
    fn non_contiguous_views_match_contiguous_copies() {
        let v = pseudo_random((6, 7, 9), 0, 255, 3).mapv(|a| a as u8);
        let t = v.view().reversed_axes();
        let mut out = vec![0u8; half(9) * half(7) * half(6)];
        downsample_volume(t, &mut out);
        let copy = t.as_standard_layout().to_owned();
        assert_eq!(out, run(&copy).into_raw_vec_and_offset().0);
    }

    #[test]
    fn cascade_matches_repeated_downsampling() {
        let v = pseudo_random((23, 19, 14), 0, 65535, 5).mapv(|a| a as u16);
        let mut cascade = Cascade::<u16>::new((19, 14), 3);
        let shapes = cascade.level_shapes();
        let mut bufs: Vec<Vec<u16>> = shapes.iter().map(|&(h, w)| vec![0; h * w]).collect();
        let mut levels: Vec<Vec<u16>> = vec![Vec::new(); 3];
        let mut collect = |done: Vec<(usize, usize)>, bufs: &Vec<Vec<u16>>| {
            for (level, _z) in done {
                levels[level - 1].extend_from_slice(&bufs[level - 1]);
            }
        };
        for z in 0..23 {
            let mut outs: Vec<&mut [u16]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
            let done = cascade.push(v.index_axis(Axis(0), z), &mut outs);
            collect(done, &bufs);
        }
        let mut outs: Vec<&mut [u16]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
        let done = cascade.finish(&mut outs);
        collect(done, &bufs);
        let mut expected = v.clone();
        for (k, level) in levels.iter().enumerate() {
            expected = run(&expected);
            assert_eq!(
                level,
                &expected.clone().into_raw_vec_and_offset().0,
                "level {}",
                k + 1
            );
        }
        assert_eq!(cascade.produced(), vec![12, 6, 3]);
    }
}
