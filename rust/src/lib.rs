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
use pyo3::types::PyTuple;

use kernel::{half, Voxel};
use volume::Cascade;

/// The one list of voxel types on the Rust side, as `(numpy name, Rust type)`: every place that
/// dispatches on the dtype expands it through `$callback`, so none can miss a type.
/// (`tests/test_dtypes.py` checks it against the Python list and the `.pyi` stub.)
macro_rules! for_each_dtype {
    ($callback:ident) => {
        $callback! {
            ("uint8", u8),
            ("uint16", u16),
            ("int16", i16),
            ("uint32", u32),
            ("int32", i32),
            ("float32", f32),
            ("float64", f64)
        }
    };
}

macro_rules! dtype_names {
    ($(($name:literal, $t:ty)),*) => {
        &[$($name),*]
    };
}

/// The dtypes the kernels take, by numpy name (exposed to Python as `_core.DTYPES`).
pub const DTYPES: &[&str] = for_each_dtype!(dtype_names);

fn accepted() -> String {
    DTYPES.join(", ")
}

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
    macro_rules! try_each {
        ($(($name:literal, $t:ty)),*) => {$(
            if let Ok(a) = volume.cast::<PyArray3<$t>>() {
                return downsample_typed::<$t>(py, a);
            }
        )*};
    }
    for_each_dtype!(try_each);
    Err(PyTypeError::new_err(format!(
        "downsample takes a 3D numpy array of {} in native byte order",
        accepted()
    )))
}

/// A cascade of any voxel type, behind one interface for the Python class.
trait AnyCascade: Send + Sync {
    fn push<'py>(
        &mut self,
        py: Python<'py>,
        plane: Option<&Bound<'py, PyAny>>,
        outs: &[Bound<'py, PyAny>],
    ) -> PyResult<Vec<(usize, usize)>>;
    fn level_shapes(&self) -> Vec<(usize, usize)>;
    fn produced(&self) -> Vec<usize>;
}

impl<T: Voxel + Element> AnyCascade for Cascade<T> {
    fn push<'py>(
        &mut self,
        py: Python<'py>,
        plane: Option<&Bound<'py, PyAny>>,
        outs: &[Bound<'py, PyAny>],
    ) -> PyResult<Vec<(usize, usize)>> {
        push_typed(py, self, plane, outs)
    }

    fn level_shapes(&self) -> Vec<(usize, usize)> {
        Cascade::level_shapes(self)
    }

    fn produced(&self) -> Vec<usize> {
        Cascade::produced(self)
    }
}

/// A cascade for the dtype named `dtype`, or None when the kernels do not take it.
fn new_cascade(dtype: &str, shape: (usize, usize), levels: usize) -> Option<Box<dyn AnyCascade>> {
    macro_rules! by_name {
        ($(($name:literal, $t:ty)),*) => {
            match dtype {
                $($name => Some(Box::new(Cascade::<$t>::new(shape, levels)) as Box<dyn AnyCascade>),)*
                _ => None,
            }
        };
    }
    for_each_dtype!(by_name)
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
    inner: Box<dyn AnyCascade>,
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
        let inner = new_cascade(dtype, (height, width), levels).ok_or_else(|| {
            PyTypeError::new_err(format!(
                "unsupported dtype {dtype:?}: the cascade takes {}",
                accepted()
            ))
        })?;
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
        self.inner.push(py, Some(plane), &outs)
    }

    /// Flushes the partial blocks left at the end of the volume into `outs`.
    fn finish<'py>(
        &mut self,
        py: Python<'py>,
        outs: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Vec<(usize, usize)>> {
        self.inner.push(py, None, &outs)
    }

    /// (y, x) shape of each output level, level 1 first.
    #[getter]
    fn level_shapes(&self) -> Vec<(usize, usize)> {
        self.inner.level_shapes()
    }

    /// Output planes produced so far, per level.
    #[getter]
    fn produced(&self) -> Vec<usize> {
        self.inner.produced()
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
    m.add("DTYPES", PyTuple::new(m.py(), DTYPES)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_makes_a_cascade_and_nothing_else_does() {
        assert_eq!(DTYPES.len(), 7);
        for name in DTYPES {
            let c = new_cascade(name, (5, 3), 2).expect("listed dtype");
            assert_eq!(c.level_shapes(), vec![(3, 2), (2, 1)]);
        }
        for name in ["int8", "uint64", "float16", "bool", ""] {
            assert!(new_cascade(name, (5, 3), 2).is_none(), "{name}");
        }
    }
}
