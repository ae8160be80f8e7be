//! `ctstack._core`: the Rust core of napari-ctstack, exposed to Python with PyO3.
//!
//! This file only wires Python types to the pure-Rust kernels in `kernel` and `volume`: it
//! borrows numpy arrays without copying, checks shapes, and releases the GIL around the work.

pub mod kernel;
pub mod volume;

use numpy::ndarray::{Array3, ArrayView2};
use numpy::{
    Element, IntoPyArray, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray2, PyReadwriteArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use kernel::{half, Voxel};
use volume::Cascade;

const ACCEPTED: &str = "uint8, uint16, int16, uint32, int32, float32 or float64";

fn downsample_typed<'py, T: Voxel + Element>(
    py: Python<'py>,
    volume: &Bound<'py, PyArray3<T>>,
) -> PyResult<Bound<'py, PyAny>> {
    let readonly = volume.readonly();
    let view = readonly.as_array();
    let (nz, ny, nx) = view.dim();
    if nz == 0 || ny == 0 || nx == 0 {
        return Err(PyValueError::new_err(format!(
            "cannot downsample an empty volume of shape ({nz}, {ny}, {nx})"
        )));
    }
    let shape = (half(nz), half(ny), half(nx));
    let mut out = vec![T::default(); shape.0 * shape.1 * shape.2];
    py.detach(|| volume::downsample_volume(view, &mut out));
    let array = Array3::from_shape_vec(shape, out).expect("length matches shape");
    Ok(array.into_pyarray(py).into_any())
}

/// One pyramid level of a 3D `(z, y, x)` numpy array: the exact 2x2x2 block mean.
#[pyfunction]
fn downsample<'py>(py: Python<'py>, volume: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    macro_rules! try_type {
        ($($t:ty),*) => {$(
            if let Ok(a) = volume.cast::<PyArray3<$t>>() {
                return downsample_typed::<$t>(py, a);
            }
        )*};
    }
    try_type!(u8, u16, i16, u32, i32, f32, f64);
    Err(PyTypeError::new_err(format!(
        "downsample takes a 3D numpy array of {ACCEPTED} in native byte order"
    )))
}

enum AnyCascade {
    U8(Cascade<u8>),
    U16(Cascade<u16>),
    I16(Cascade<i16>),
    U32(Cascade<u32>),
    I32(Cascade<i32>),
    F32(Cascade<f32>),
    F64(Cascade<f64>),
}

macro_rules! dispatch {
    ($inner:expr, $c:ident => $body:expr) => {
        match $inner {
            AnyCascade::U8($c) => $body,
            AnyCascade::U16($c) => $body,
            AnyCascade::I16($c) => $body,
            AnyCascade::U32($c) => $body,
            AnyCascade::I32($c) => $body,
            AnyCascade::F32($c) => $body,
            AnyCascade::F64($c) => $body,
        }
    };
}

/// Borrows the caller's output planes mutably, checking dtype, shape and contiguity.
fn borrow_outs<'py, T: Element>(
    outs: &[Bound<'py, PyAny>],
    shapes: &[(usize, usize)],
) -> PyResult<Vec<PyReadwriteArray2<'py, T>>> {
    if outs.len() != shapes.len() {
        return Err(PyValueError::new_err(format!(
            "expected {} output planes, one per level, got {}",
            shapes.len(),
            outs.len()
        )));
    }
    outs.iter()
        .zip(shapes)
        .enumerate()
        .map(|(i, (o, &(h, w)))| {
            let a = o.cast::<PyArray2<T>>().map_err(|_| {
                PyTypeError::new_err(format!("output plane {} has the wrong dtype", i + 1))
            })?;
            if a.shape() != [h, w] || !a.is_c_contiguous() {
                return Err(PyValueError::new_err(format!(
                    "output plane {} must be C-contiguous with shape ({h}, {w})",
                    i + 1
                )));
            }
            Ok(a.readwrite())
        })
        .collect()
}

fn push_typed<'py, T: Voxel + Element>(
    py: Python<'py>,
    cascade: &mut Cascade<T>,
    plane: Option<&Bound<'py, PyAny>>,
    outs: &[Bound<'py, PyAny>],
) -> PyResult<Vec<(usize, usize)>> {
    let shapes = cascade.level_shapes();
    let mut borrowed = borrow_outs::<T>(outs, &shapes)?;
    let mut slices: Vec<&mut [T]> = borrowed
        .iter_mut()
        .map(|b| b.as_slice_mut().expect("checked contiguous"))
        .collect();
    let Some(plane) = plane else {
        return Ok(py.detach(|| cascade.finish(&mut slices)));
    };
    let plane: PyReadonlyArray2<T> = plane
        .cast::<PyArray2<T>>()
        .map_err(|_| PyTypeError::new_err("the plane's dtype differs from the cascade's"))?
        .readonly();
    let view: ArrayView2<T> = plane.as_array();
    let expected = cascade.input_shape();
    if view.dim() != expected {
        return Err(PyValueError::new_err(format!(
            "plane has shape {:?}, the cascade takes {:?}",
            view.dim(),
            expected
        )));
    }
    Ok(py.detach(|| cascade.push(view, &mut slices)))
}

/// Streaming pyramid builder: feed source planes in z order, get every level's planes.
#[pyclass(module = "ctstack._core", name = "Cascade")]
struct PyCascade {
    inner: AnyCascade,
    dtype: String,
}

#[pymethods]
impl PyCascade {
    #[new]
    fn new(height: usize, width: usize, levels: usize, dtype: &str) -> PyResult<Self> {
        if height == 0 || width == 0 || levels == 0 {
            return Err(PyValueError::new_err(
                "a cascade needs planes of at least one pixel and at least one level",
            ));
        }
        let shape = (height, width);
        let inner = match dtype {
            "uint8" => AnyCascade::U8(Cascade::new(shape, levels)),
            "uint16" => AnyCascade::U16(Cascade::new(shape, levels)),
            "int16" => AnyCascade::I16(Cascade::new(shape, levels)),
            "uint32" => AnyCascade::U32(Cascade::new(shape, levels)),
            "int32" => AnyCascade::I32(Cascade::new(shape, levels)),
            "float32" => AnyCascade::F32(Cascade::new(shape, levels)),
            "float64" => AnyCascade::F64(Cascade::new(shape, levels)),
            other => {
                return Err(PyTypeError::new_err(format!(
                    "unsupported dtype {other:?}: the cascade takes {ACCEPTED}"
                )))
            }
        };
        Ok(PyCascade {
            inner,
            dtype: dtype.to_owned(),
        })
    }

    /// Feeds the next source plane; returns the (level, z) planes now written into `outs`.
    fn push<'py>(
        &mut self,
        py: Python<'py>,
        plane: &Bound<'py, PyAny>,
        outs: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Vec<(usize, usize)>> {
        dispatch!(&mut self.inner, c => push_typed(py, c, Some(plane), &outs))
    }

    /// Flushes the partial blocks left at the end of the volume into `outs`.
    fn finish<'py>(
        &mut self,
        py: Python<'py>,
        outs: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Vec<(usize, usize)>> {
        dispatch!(&mut self.inner, c => push_typed(py, c, None, &outs))
    }

    /// (y, x) shape of each output level, level 1 first.
    #[getter]
    fn level_shapes(&self) -> Vec<(usize, usize)> {
        dispatch!(&self.inner, c => c.level_shapes())
    }

    /// Output planes produced so far, per level.
    #[getter]
    fn produced(&self) -> Vec<usize> {
        dispatch!(&self.inner, c => c.produced())
    }

    #[getter]
    fn dtype(&self) -> &str {
        &self.dtype
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(downsample, m)?)?;
    m.add_class::<PyCascade>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
