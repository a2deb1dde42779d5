//! Resizing and encoding decoded pictures with the `image` crate (JPEGs at the decoded size come
//! ready from the pipeline).

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::imageops::FilterType;
use image::{ExtendedColorType, ImageEncoder, RgbImage};

use crate::decode::{DecodedFrame, Pixels};
use crate::error::ImagingError;

/// GetImages' Format with its FormatConfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// JPEGQuality 1-100.
    Jpeg {
        quality: u8,
    },
    Png,
}

/// The output size for a `source_width`×`source_height` picture given the requested
/// WidthPixels/HeightPixels: both given → exactly that; one given → the other follows the source
/// aspect ratio (rounded, at least 1); none → `None` (the source size).
pub fn output_size(
    (source_width, source_height): (u32, u32),
    width: Option<u32>,
    height: Option<u32>,
) -> Option<(u32, u32)> {
    let scaled = |value: u32, numerator: u32, denominator: u32| -> u32 {
        let exact = u64::from(value) * u64::from(numerator);
        let rounded = (exact + u64::from(denominator.max(1)) / 2) / u64::from(denominator.max(1));
        u32::try_from(rounded).unwrap_or(u32::MAX).max(1)
    };
    match (width, height) {
        (Some(w), Some(h)) => Some((w, h)),
        (Some(w), None) => Some((w, scaled(w, source_height, source_width))),
        (None, Some(h)) => Some((scaled(h, source_width, source_height), h)),
        (None, None) => None,
    }
}

/// Encodes `frame`, resized to `size` when given (and different from the source).
pub fn encode_image(
    frame: DecodedFrame,
    format: ImageFormat,
    size: Option<(u32, u32)>,
) -> Result<Vec<u8>, ImagingError> {
    let rgb = match frame.pixels {
        Pixels::Jpeg(jpeg)
            if matches!(format, ImageFormat::Jpeg { .. }) && size.is_none_or(|s| s == (frame.width, frame.height)) =>
        {
            return Ok(jpeg);
        }
        Pixels::Jpeg(_) => return Err(ImagingError::Encode("a JPEG from the pipeline cannot be re-encoded".into())),
        Pixels::Rgb(rgb) => rgb,
    };
    let source = RgbImage::from_raw(frame.width, frame.height, rgb)
        .ok_or_else(|| ImagingError::Encode("picture size does not match its pixels".into()))?;
    let picture = match size {
        Some((w, h)) if (w, h) != (frame.width, frame.height) => {
            // Triangle (bilinear) keeps test patterns crisp enough at a fraction of Lanczos' cost.
            image::imageops::resize(&source, w, h, FilterType::Triangle)
        }
        _ => source,
    };
    let mut out = Vec::with_capacity(picture.as_raw().len() / 8);
    let (w, h) = picture.dimensions();
    let encoded =
        match format {
            ImageFormat::Jpeg { quality } => JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
                .write_image(picture.as_raw(), w, h, ExtendedColorType::Rgb8),
            ImageFormat::Png => PngEncoder::new(&mut out).write_image(picture.as_raw(), w, h, ExtendedColorType::Rgb8),
        };
    encoded.map_err(|e| ImagingError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32) -> DecodedFrame {
        let mut rgb = Vec::new();
        for y in 0..height {
            for x in 0..width {
                rgb.extend_from_slice(&[(x * 255 / width) as u8, (y * 255 / height) as u8, 128]);
            }
        }
        DecodedFrame { pts_ms: 0, width, height, pixels: Pixels::Rgb(rgb) }
    }

    #[test]
    fn one_dimension_keeps_the_aspect_ratio() {
        assert_eq!(output_size((1920, 1080), Some(640), None), Some((640, 360)));
        assert_eq!(output_size((1920, 1080), None, Some(360)), Some((640, 360)));
        assert_eq!(output_size((1920, 1080), Some(100), Some(100)), Some((100, 100)));
        assert_eq!(output_size((1920, 1080), None, None), None);
        assert_eq!(output_size((1920, 1080), Some(1), None), Some((1, 1)));
    }

    #[test]
    fn jpeg_and_png_decode_back_to_the_picture() {
        let frame = gradient(64, 48);
        let png = encode_image(frame.clone(), ImageFormat::Png, None).expect("png");
        let back = image::load_from_memory(&png).expect("readable png").to_rgb8();
        assert_eq!(Pixels::Rgb(back.into_raw()), frame.pixels, "PNG is lossless");

        let jpeg = encode_image(frame.clone(), ImageFormat::Jpeg { quality: 90 }, Some((32, 24))).expect("jpeg");
        let back = image::load_from_memory(&jpeg).expect("readable jpeg").to_rgb8();
        assert_eq!(back.dimensions(), (32, 24));
        // The right edge is red-heavy, the left is not, as in the source gradient.
        assert!(back.get_pixel(31, 12)[0] > 200 && back.get_pixel(0, 12)[0] < 40);
    }

    #[test]
    fn lower_quality_makes_smaller_jpegs() {
        let small = encode_image(gradient(128, 96), ImageFormat::Jpeg { quality: 5 }, None).expect("jpeg");
        let large = encode_image(gradient(128, 96), ImageFormat::Jpeg { quality: 100 }, None).expect("jpeg");
        assert!(small.len() < large.len(), "{} < {}", small.len(), large.len());
    }
}
