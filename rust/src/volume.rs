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
    let r = plane.clone().index_axis_move(Axis(0), y);
    match r.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(r.to_vec()),
    }
}

/// One pyramid level of a whole `(z, y, x)` volume into `out` (C order, `ceil(n/2)` per axis).
pub fn downsample_volume<T: Voxel>(input: ArrayView3<'_, T>, out: &mut [T]) {
    let (nz, ny, nx) = input.dim();
    let (oy, ox) = (half(ny), half(nx));
    assert_eq!(out.len(), half(nz) * oy * ox, "output length does not match the input shape");
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
        Cascade { in_shape: shape, levels }
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
