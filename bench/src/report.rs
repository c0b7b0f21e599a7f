//! The one JSON line on stdout, fields in a fixed order.

use serde_json::Value;

use crate::stats::Histogram;

pub struct Line {
    buf: String,
}

impl Line {
    pub fn new(mode: &str, label: Option<&str>) -> Line {
        let mut l = Line {
            buf: String::from("{"),
        };
        l.field("mode", mode);
        l.field("label", label);
        l
    }

    /// Adds `"key":value`; `None` becomes null.
    pub fn field(&mut self, key: &str, value: impl Into<Value>) -> &mut Line {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        self.buf.push_str(&Value::from(key).to_string());
        self.buf.push(':');
        self.buf.push_str(&value.into().to_string());
        self
    }

    /// Adds `"key":` followed by already rendered JSON.
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Line {
        self.field(key, Value::Null);
        self.buf.truncate(self.buf.len() - "null".len());
        self.buf.push_str(json);
        self
    }

    pub fn finish(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

/// A float rounded to `places` decimals (null if not finite).
pub fn round(x: f64, places: i32) -> Value {
    if !x.is_finite() {
        return Value::Null;
    }
    let f = 10f64.powi(places);
    Value::from((x * f).round() / f)
}

pub fn opt_round(x: Option<f64>, places: i32) -> Value {
    x.map_or(Value::Null, |x| round(x, places))
}

/// A rate as given: whole numbers without a fraction.
pub fn rate_value(rate: f64) -> Value {
    if rate.fract() == 0.0 {
        Value::from(rate as u64)
    } else {
        round(rate, 3)
    }
}

/// `{"p50":..,"p90":..,"p99":..,"max":..}` in µs, nulls when empty.
pub fn latency(h: &Histogram) -> String {
    let v = |x: Option<u64>| x.map_or("null".to_string(), |x| x.to_string());
    let max = (h.count() > 0).then(|| h.max());
    format!(
        "{{\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{}}}",
        v(h.percentile(50.0)),
        v(h.percentile(90.0)),
        v(h.percentile(99.0)),
        v(max)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_field_order_and_escapes() {
        let mut l = Line::new("idle", Some("a \"b\""));
        l.field("conns", 3)
            .field("x", None::<u64>)
            .field("r", round(1.23456, 2));
        let mut h = Histogram::default();
        h.record(7);
        l.raw("lat", &latency(&h));
        l.raw("none", &latency(&Histogram::default()));
        assert_eq!(
            l.finish(),
            r#"{"mode":"idle","label":"a \"b\"","conns":3,"x":null,"r":1.23,"lat":{"p50":7,"p90":7,"p99":7,"max":7},"none":{"p50":null,"p90":null,"p99":null,"max":null}}"#
        );
    }
}
