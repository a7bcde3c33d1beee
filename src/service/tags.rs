//! Tag operations: TagResource, UntagResource, ListResourceTags. Bounds from the AWS API
//! reference (Tag): keys 1–128 characters, values 0–256, at most 50 tags per key, and the
//! `aws:` prefix reserved.

use super::validate::{self, int_in_range, required, required_key_id};
use super::{decode_marker, encode_marker, Kms, ServiceError, StateRule};
use crate::api::*;
use crate::request::Call;

/// At most this many tags per key.
pub const MAX_TAGS_PER_KEY: usize = 50;

/// Checks every tag of a request. Lengths are ValidationException with AWS's message and
/// field path (`tags.<n>.member.tagKey`, counted from 1); the reserved `aws:` prefix is
/// TagException.
pub(crate) fn validate_tags(tags: &[Tag]) -> Result<(), ServiceError> {
    for (index, tag) in tags.iter().enumerate() {
        let n = index + 1;
        validate_tag_key(&format!("Tags.{n}.member.TagKey"), &tag.tag_key)?;
        validate::length(&format!("Tags.{n}.member.TagValue"), &tag.tag_value, 0, 256)?;
    }
    if tags.len() > MAX_TAGS_PER_KEY {
        return Err(ServiceError::LimitExceeded(format!(
            "Tags has {} tags; a key can have at most {MAX_TAGS_PER_KEY}",
            tags.len()
        )));
    }
    Ok(())
}

/// A TagKey (1–128 characters, not `aws:`); `field` is its path in the request.
fn validate_tag_key(field: &str, key: &str) -> Result<(), ServiceError> {
    validate::length(field, key, 1, 128)?;
    if key.starts_with("aws:") {
        return Err(ServiceError::Tag(format!(
            "TagKey '{key}' uses the reserved prefix 'aws:'"
        )));
    }
    Ok(())
}

impl Kms {
    /// TagResource: adds or overwrites tags.
    pub fn tag_resource(
        &self,
        call: &Call,
        request: TagResourceRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let tags = required("Tags", &request.tags)?;
        validate_tags(tags)?;
        self.change_key(
            call,
            key_id,
            "kms:TagResource",
            StateRule::NotPendingDeletion,
            |record| {
                for tag in tags {
                    record
                        .tags
                        .insert(tag.tag_key.clone(), tag.tag_value.clone());
                }
                if record.tags.len() > MAX_TAGS_PER_KEY {
                    return Err(ServiceError::LimitExceeded(format!(
                        "key {} would have {} tags; at most {MAX_TAGS_PER_KEY} are allowed",
                        record.key_id,
                        record.tags.len()
                    )));
                }
                Ok(())
            },
        )?;
        Ok(EmptyResponse {})
    }

    /// UntagResource: removes tags by key; unknown tag keys are ignored, as in AWS.
    pub fn untag_resource(
        &self,
        call: &Call,
        request: UntagResourceRequest,
    ) -> Result<EmptyResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let tag_keys = required("TagKeys", &request.tag_keys)?;
        for (index, key) in tag_keys.iter().enumerate() {
            validate_tag_key(&format!("TagKeys.{}.member", index + 1), key)?;
        }
        self.change_key(
            call,
            key_id,
            "kms:UntagResource",
            StateRule::NotPendingDeletion,
            |record| {
                for key in tag_keys {
                    record.tags.remove(key);
                }
                Ok(())
            },
        )?;
        Ok(EmptyResponse {})
    }

    /// ListResourceTags: Limit 1–50, default 50, in tag key order.
    pub fn list_resource_tags(
        &self,
        call: &Call,
        request: ListKeyScopedRequest,
    ) -> Result<ListResourceTagsResponse, ServiceError> {
        let key_id = required_key_id("KeyId", &request.key_id)?;
        let limit = int_in_range("Limit", request.limit, 1, 50, 50)? as usize;
        let after = decode_marker(request.marker.as_deref())?;
        let entry = self
            .resolve_authorized(call, "KeyId", key_id, "kms:ListResourceTags")?
            .entry;
        let mut tags: Vec<Tag> = entry
            .record
            .tags
            .iter()
            .filter(|(k, _)| after.as_deref().is_none_or(|a| k.as_str() > a))
            .map(|(k, v)| Tag {
                tag_key: k.clone(),
                tag_value: v.clone(),
            })
            .collect();
        let truncated = tags.len() > limit;
        tags.truncate(limit);
        Ok(ListResourceTagsResponse {
            next_marker: truncated
                .then(|| tags.last().map(|t| encode_marker(&t.tag_key)))
                .flatten(),
            truncated,
            tags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag {
            tag_key: k.into(),
            tag_value: v.into(),
        }
    }

    #[test]
    fn tag_bounds() {
        let long_key = "k".repeat(129);
        let long_value = "v".repeat(257);
        let ok_key = "k".repeat(128);
        let ok_value = "v".repeat(256);
        let cases: Vec<(Vec<Tag>, bool)> = vec![
            (vec![tag("team", "")], true),
            (vec![tag(&ok_key, &ok_value)], true),
            (vec![tag("", "x")], false),
            (vec![tag(&long_key, "x")], false),
            (vec![tag("k", &long_value)], false),
            (vec![tag("aws:x", "y")], false),
            ((0..50).map(|i| tag(&format!("k{i}"), "v")).collect(), true),
            ((0..51).map(|i| tag(&format!("k{i}"), "v")).collect(), false),
        ];
        for (tags, ok) in cases {
            assert_eq!(validate_tags(&tags).is_ok(), ok, "{tags:?}");
        }
    }
}
