//! Input checks shared by every subgraph, so a field means the same limits everywhere.

use crate::error::ApiError;

/// Trims, then checks that `value` has between `min` and `max` characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String, ApiError> {
    let trimmed = value.trim();
    let len = trimmed.chars().count();
    if len < min {
        return Err(ApiError::bad_input(if min == 1 {
            format!("`{field}` must not be empty")
        } else {
            format!("`{field}` must be at least {min} characters, got {len}")
        }));
    }
    if len > max {
        return Err(ApiError::bad_input(format!(
            "`{field}` must be at most {max} characters, got {len}"
        )));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::bad_input(format!(
            "`{field}` contains control characters"
        )));
    }
    Ok(trimmed.to_owned())
}

/// An absolute `https://` (or `http://`) URL of at most 2048 characters.
pub fn url(field: &str, value: &str) -> Result<String, ApiError> {
    const MAX: usize = 2048;
    let value = value.trim();
    if value.len() > MAX {
        return Err(ApiError::bad_input(format!(
            "`{field}` must be at most {MAX} characters"
        )));
    }
    match url::Url::parse(value) {
        Ok(parsed) if matches!(parsed.scheme(), "https" | "http") && parsed.host().is_some() => {
            Ok(value.to_owned())
        }
        _ => Err(ApiError::bad_input(format!(
            "`{field}` must be an absolute http(s) URL"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_limits() {
        assert_eq!(text("bio", "  hi  ", 0, 5).unwrap(), "hi");
        assert!(
            text("body", "   ", 1, 5)
                .unwrap_err()
                .to_string()
                .contains("must not be empty")
        );
        assert!(
            text("bio", "123456", 0, 5)
                .unwrap_err()
                .to_string()
                .contains("at most 5")
        );
        assert!(text("bio", "a\u{0}b", 0, 5).is_err());
        // Characters, not bytes.
        assert!(text("bio", "ééééé", 0, 5).is_ok());
    }

    #[test]
    fn urls() {
        assert!(url("avatarUrl", "https://cdn.example.com/a.png").is_ok());
        for bad in ["ftp://x/y", "/relative", "javascript:alert(1)", "https://"] {
            assert!(url("avatarUrl", bad).is_err(), "{bad}");
        }
    }
}
