//! Durability and TPM binding: restarts keep keys, a foreign TPM or a changed PCR is
//! refused with a clear message and the state dir is left untouched, and SIGKILL in the
//! middle of a create-key loop loses no acknowledged key.

mod common;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_every_key_usable() {
    let mut fx = Fixture::start();
    let client = fx.client();
    let mut ciphertexts = Vec::new();
    for i in 0..5 {
        let key = create_key(&client).await;
        let encrypted = ok(
            &client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(format!("secret {i}").as_bytes())}),
        )
        .await;
        ciphertexts.push((key, encrypted["CiphertextBlob"].clone(), i));
    }
    ok(
        &client,
        "CreateAlias",
        json!({"AliasName": "alias/kept", "TargetKeyId": ciphertexts[0].0}),
    )
    .await;
    ok(
        &client,
        "RotateKeyOnDemand",
        json!({"KeyId": ciphertexts[0].0}),
    )
    .await;
    drop(client);
    fx.restart();
    let client = fx.client();
    for (key, blob, i) in &ciphertexts {
        let decrypted = ok(&client, "Decrypt", json!({"CiphertextBlob": blob})).await;
        assert_eq!(
            unb64(&decrypted["Plaintext"]),
            format!("secret {i}").as_bytes()
        );
        assert!(decrypted["KeyId"].as_str().unwrap().ends_with(key.as_str()));
    }
    ok(
        &client,
        "Encrypt",
        json!({"KeyId": "alias/kept", "Plaintext": b64(b"after restart")}),
    )
    .await;
    let listed = ok(&client, "ListKeys", json!({})).await;
    assert_eq!(listed["Keys"].as_array().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn fresh_tpm_with_old_state_dir_is_refused_and_state_untouched() {
    let mut fx = Fixture::start();
    create_key(&fx.client()).await;
    fx.kmsd.stop();
    let before = dir_fingerprint(&fx.dir.state_dir());
    let other_tpm = Swtpm::start();
    let Err(log) = Kmsd::try_start(&other_tpm, &fx.dir, KmsdOptions::default()) else {
        panic!("kmsd started against a different TPM")
    };
    assert!(
        log.contains("SRK") && log.contains("cleared or replaced"),
        "unclear message: {log}"
    );
    assert!(log.contains("untouched"), "{log}");
    assert_eq!(before, dir_fingerprint(&fx.dir.state_dir()));
    // And the original TPM still opens it.
    fx.kmsd = Kmsd::start(&fx.tpm, &fx.dir);
    assert_eq!(
        ok(&fx.client(), "ListKeys", json!({})).await["Keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pcr_policy_binding_fails_clearly_after_extend() {
    let tpm = Swtpm::start();
    let dir = KmsdDir::new();
    let options = KmsdOptions {
        tpm: "pcr_bank = \"sha256\"\npcrs = [16]".into(),
        ..KmsdOptions::default()
    };
    let mut kmsd = Kmsd::start_with(&tpm, &dir, options.clone());
    let key = create_key(&kmsd.client()).await;
    kmsd.stop();
    // Unchanged PCRs: it starts again.
    let mut kmsd = Kmsd::start_with(&tpm, &dir, options.clone());
    ok(&kmsd.client(), "DescribeKey", json!({"KeyId": key})).await;
    kmsd.stop();
    let extended = tpm.tpm2(&[
        "tpm2_pcrextend",
        "16:sha256=0000000000000000000000000000000000000000000000000000000000000001",
    ]);
    assert!(extended.status.success(), "{extended:?}");
    let before = dir_fingerprint(&dir.state_dir());
    let Err(log) = Kmsd::try_start(&tpm, &dir, options) else {
        panic!("kmsd started although PCR 16 changed")
    };
    assert!(
        log.contains("PCR 16"),
        "message does not name the PCR: {log}"
    );
    assert!(log.contains("sha256"), "{log}");
    assert_eq!(before, dir_fingerprint(&dir.state_dir()));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_create_key_loop_loses_no_acknowledged_key() {
    let tpm = Swtpm::start();
    let dir = KmsdDir::new();
    let mut kmsd = Kmsd::start(&tpm, &dir);
    let socket = kmsd.socket.clone();
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let socket = socket.clone();
            let acked_tx = acked_tx.clone();
            tokio::spawn(async move {
                let client = Client::new(&socket);
                loop {
                    match client
                        .call_json("CreateKey", &json!({"Description": "crash test"}))
                        .await
                    {
                        Ok(created) => {
                            let id = created["KeyMetadata"]["KeyId"]
                                .as_str()
                                .unwrap()
                                .to_string();
                            if acked_tx.send(id).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    drop(acked_tx);
    let mut acked = Vec::new();
    while acked.len() < 40 {
        match tokio::time::timeout(Duration::from_secs(60), acked_rx.recv()).await {
            Ok(Some(id)) => acked.push(id),
            _ => panic!("create-key loop stalled"),
        }
    }
    kmsd.kill();
    for writer in writers {
        writer.await.unwrap();
    }
    while let Ok(id) = acked_rx.try_recv() {
        acked.push(id);
    }
    let kmsd = Kmsd::start(&tpm, &dir);
    let client = kmsd.client();
    for id in &acked {
        let described = ok(&client, "DescribeKey", json!({"KeyId": id})).await;
        assert_eq!(described["KeyMetadata"]["KeyState"], "Enabled");
        ok(
            &client,
            "Encrypt",
            json!({"KeyId": id, "Plaintext": b64(b"still here")}),
        )
        .await;
    }
    let listed = ok(&client, "ListKeys", json!({"Limit": 1000})).await;
    assert!(listed["Keys"].as_array().unwrap().len() >= acked.len());
}
