//! One template for all the members of a matrix sweep: the members' templates are compared
//! leaf by leaf, and each string that differs becomes an input parameter whose value every
//! task passes. A 1,000-member sweep is then one template and 1,000 small tasks rather than
//! 1,000 templates (which would not fit in one Kubernetes object).

use serde_json::Value;

pub(crate) struct Merged {
    /// The shared template, varying strings replaced by `placeholder(j)`.
    pub template: Value,
    /// Per member, the value of each varying string, in order `j = 0, 1, …`.
    pub values: Vec<Vec<String>>,
}

/// Merges `members` (at least one); `None` when they differ in anything but strings at
/// paths `allowed` accepts (then each member needs its own template).
pub(crate) fn merge(
    members: &[Value],
    allowed: &dyn Fn(&[&str]) -> bool,
    placeholder: &dyn Fn(usize) -> String,
) -> Option<Merged> {
    let first = members.first()?;
    let mut values = vec![Vec::new(); members.len()];
    let mut path = Vec::new();
    let refs: Vec<&Value> = members.iter().collect();
    let template = walk(first, &refs, &mut path, allowed, placeholder, &mut values)?;
    Some(Merged { template, values })
}

fn walk<'a>(
    first: &'a Value,
    all: &[&'a Value],
    path: &mut Vec<&'a str>,
    allowed: &dyn Fn(&[&str]) -> bool,
    placeholder: &dyn Fn(usize) -> String,
    values: &mut [Vec<String>],
) -> Option<Value> {
    if all.iter().all(|v| *v == first) {
        return Some(first.clone());
    }
    match first {
        Value::String(_) => {
            if !allowed(path) {
                return None;
            }
            let mut strings = Vec::with_capacity(all.len());
            for v in all {
                strings.push(v.as_str()?.to_string());
            }
            // A column equal to an earlier one (the step's name in two places) is reused.
            let columns = values.first().map_or(0, Vec::len);
            let same = (0..columns).find(|&j| values.iter().zip(&strings).all(|(m, s)| m[j] == *s));
            let j = match same {
                Some(j) => j,
                None => {
                    for (member, s) in values.iter_mut().zip(strings) {
                        member.push(s);
                    }
                    columns
                }
            };
            Some(Value::String(placeholder(j)))
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let mut column = Vec::with_capacity(all.len());
                for v in all {
                    let arr = v.as_array()?;
                    if arr.len() != items.len() {
                        return None;
                    }
                    column.push(&arr[i]);
                }
                out.push(walk(item, &column, path, allowed, placeholder, values)?);
            }
            Some(Value::Array(out))
        }
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (key, item) in map {
                let mut column = Vec::with_capacity(all.len());
                for v in all {
                    let obj = v.as_object()?;
                    if obj.len() != map.len() {
                        return None;
                    }
                    column.push(obj.get(key)?);
                }
                path.push(key.as_str());
                let merged = walk(item, &column, path, allowed, placeholder, values);
                path.pop();
                out.insert(key.clone(), merged?);
            }
            Some(Value::Object(out))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differing_strings_become_parameters_and_shapes_must_match() {
        let a = json!({"c": {"args": ["x", "lr=0.1"], "n": 1}, "env": "same"});
        let b = json!({"c": {"args": ["x", "lr=0.2"], "n": 1}, "env": "same"});
        let refs = [a.clone(), b.clone()];
        let m = merge(&refs, &|_| true, &|j| format!("{{{{v{j}}}}}")).expect("merges");
        assert_eq!(
            m.template,
            json!({"c": {"args": ["x", "{{v0}}"], "n": 1}, "env": "same"})
        );
        assert_eq!(m.values, [["lr=0.1"], ["lr=0.2"]]);
        // Only where allowed.
        assert!(merge(&refs, &|p| p.first() == Some(&"env"), &|j| j.to_string()).is_none());
        let c = json!({"c": {"args": ["x"], "n": 1}, "env": "same"});
        assert!(merge(&[a.clone(), c], &|_| true, &|j| j.to_string()).is_none());
        let d = json!({"c": {"args": ["x", "lr=0.1"], "n": 2}, "env": "same"});
        assert!(merge(&[a, d], &|_| true, &|j| j.to_string()).is_none());
    }
}
