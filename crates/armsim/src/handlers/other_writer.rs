//! The "other writer" fault: a write by someone other than the client (AKS, the cloud
//! controller) that changes a resource and its ETag under the client's feet.

use super::child_resources::rebuild_parent;
use crate::error::{CloudError, CloudResult};
use crate::faults::OtherWriterAction;
use crate::json::{self, Obj};
use crate::sim::Sim;
use serde_json::Value;

/// A write by someone other than the client (AKS, the cloud controller): applied at once,
/// validated like any PUT, with a new ETag.
pub fn other_write(sim: &Sim, id: &str, action: &OtherWriterAction) -> CloudResult<()> {
    let limits = sim.live().limits;
    let mut st = sim.state();
    let Some(res) = st.get(id).cloned() else {
        return Err(CloudError::child_not_found(id));
    };
    let mut body = res.body.as_object().cloned().unwrap_or_default();
    let mut props = json::props(&body)?;
    let upsert = |props: &mut Obj, array: &str, item: &Value| -> CloudResult<()> {
        let name = item["name"].as_str().unwrap_or("").to_string();
        let mut items = props
            .get(array)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        items.retain(|c| {
            !c["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&name))
        });
        items.push(item.clone());
        props.insert(array.into(), Value::Array(items));
        Ok(())
    };
    match action {
        OtherWriterAction::Touch => {}
        OtherWriterAction::UpsertSecurityRule { rule } => {
            upsert(&mut props, "securityRules", rule)?
        }
        OtherWriterAction::UpsertRoute { route } => upsert(&mut props, "routes", route)?,
        OtherWriterAction::SetProperty { name, value } => {
            props.insert(name.clone(), value.clone());
        }
        OtherWriterAction::RemoveChild { name } => {
            for array in ["securityRules", "routes"] {
                if let Some(Value::Array(items)) = props.get_mut(array) {
                    items.retain(|c| {
                        !c["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(name))
                    });
                }
            }
        }
    }
    body.insert("properties".into(), Value::Object(props));
    rebuild_parent(&mut st, &limits, &res, &body)
}
