//! The admin API over gRPC: signs in and reads the catalogue and its revisions.
//!
//! ```sh
//! cargo run -p penghubung --example admin_grpc -- 127.0.0.1:9090 USER PASSWORD
//! ```

use penghubung_proto::admin::v1::{self as pb, admin_client::AdminClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(admin), Some(username), Some(password)) = (args.next(), args.next(), args.next())
    else {
        return Err("usage: admin_grpc ADMIN_ADDRESS USER PASSWORD".into());
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{admin}"))?
        .connect()
        .await?;
    let mut client = AdminClient::new(channel);
    let session = client
        .sign_in(pb::SignInRequest { username, password })
        .await?
        .into_inner();
    println!("signed in until {}", session.expires_at);
    // Every other call carries the session (or an API token) as bearer metadata.
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {}", session.token).parse()?;
    let mut call = tonic::Request::new(pb::GetCatalogueRequest::default());
    call.metadata_mut().insert("authorization", bearer.clone());
    let catalogue = client.get_catalogue(call).await?.into_inner();
    println!(
        "catalogue from {} at {}: {} bytes of JSON",
        catalogue.source,
        catalogue.revision,
        catalogue.catalogue_json.len()
    );
    let mut call = tonic::Request::new(pb::ListRevisionsRequest {});
    call.metadata_mut().insert("authorization", bearer);
    for r in client.list_revisions(call).await?.into_inner().revisions {
        println!("{} {} {} {}", r.id, r.created_at, r.actor, r.action);
    }
    Ok(())
}
