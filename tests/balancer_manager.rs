//! The balancer manager (`SetHandler balancer-manager`) against the real
//! binary: its form changes members as Apache's does — only with the
//! balancer's nonce and a Referer naming this host — the changes steer
//! real requests, and a reload brings the configured state back (Apache
//! without `BalancerPersist` does the same, and makes a new nonce).

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(10);

async fn request(gate: &Wsgate, raw: String) -> String {
    let mut s = TcpStream::connect(gate.addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    read_until_close(&mut s, T).await
}

async fn page(gate: &Wsgate) -> String {
    request(
        gate,
        "GET /balancer-manager HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n".into(),
    )
    .await
}

/// Posts the manager's form; `referer` as given, if any.
async fn post(gate: &Wsgate, form: &str, referer: Option<&str>) -> String {
    let referer = referer.map_or(String::new(), |r| format!("Referer: {r}\r\n"));
    request(
        gate,
        format!(
            "POST /balancer-manager HTTP/1.1\r\nHost: proxy.test\r\n{referer}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    )
    .await
}

fn nonce(page: &str) -> String {
    let re = regex::Regex::new(r"nonce=([0-9a-f-]{36})").unwrap();
    re.captures(page).expect("a nonce on the page")[1].to_string()
}

/// Which backend answered each of `n` requests to the balancer.
async fn spread(gate: &Wsgate, n: usize) -> (usize, usize) {
    let (mut a, mut b) = (0, 0);
    for _ in 0..n {
        let r = request(
            gate,
            "GET /pool/x HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n".into(),
        )
        .await;
        match header_value(&r, "x-backend").as_deref() {
            Some("a") => a += 1,
            Some("b") => b += 1,
            other => panic!("no backend answered: {other:?} {r}"),
        }
    }
    (a, b)
}

fn member_row<'a>(page: &'a str, url: &str) -> &'a str {
    page.lines()
        .find(|l| l.contains(&format!(">{url}</a>")))
        .unwrap_or_else(|| panic!("no row for {url}: {page}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_changes_members_only_with_nonce_and_referer_and_a_reload_resets_them() {
    let a = http_backend("a").await;
    let b = http_backend("b").await;
    let body = format!(
        "ServerSignature On
ProxyPass /balancer-manager !
ProxyPass /pool/ balancer://pool/
<Proxy balancer://pool>
    BalancerMember http://{a}/a
    BalancerMember http://{b}/b
</Proxy>
<Location /balancer-manager>
    SetHandler balancer-manager
    Require local
</Location>
"
    );
    let gate = Wsgate::start(&body);
    let url_a = format!("http://{a}/a");
    let first = page(&gate).await;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    // Signed as Apache's page is (ServerSignature On).
    let banner = format!("wsgate/{} (Unix)", env!("CARGO_PKG_VERSION"));
    assert!(
        first.ends_with(&format!(
            "<address>{banner} Server at proxy.test Port 80</address>\n</body></html>\n"
        )),
        "{first}"
    );
    assert!(
        member_row(&first, &url_a).contains("<td>Init Ok </td>"),
        "{first}"
    );
    let n = nonce(&first);
    let referer = format!("http://proxy.test:{}/balancer-manager", gate.addr.port());
    let disable_a = format!(
        "w_status_D=1&w={}&b=pool&nonce={n}",
        url_a.replace(':', "%3A").replace('/', "%2F")
    );

    // A cross-site post (no Referer, or another host's) changes nothing.
    post(&gate, &disable_a, None).await;
    post(&gate, &disable_a, Some("http://evil.test/")).await;
    gate.wait_log(
        "AH10187: ignoring params in balancer-manager cross-site access",
        2,
    )
    .await;
    // Nor one without the balancer's nonce.
    let wrong = disable_a.replace(&n, "00000000-0000-0000-0000-000000000000");
    post(&gate, &wrong, Some(&referer)).await;
    assert_eq!(spread(&gate, 4).await, (2, 2));

    // With both: member a is disabled, and requests go to b only.
    let after = post(&gate, &disable_a, Some(&referer)).await;
    assert!(
        member_row(&after, &url_a).contains("<td>Init Dis </td>"),
        "{after}"
    );
    assert_eq!(spread(&gate, 4).await, (0, 4));

    // Enabled again with a load factor of 3: three requests in four.
    let reweight = format!("w_status_D=0&w_lf=3&w={url_a}&b=pool&nonce={n}");
    let after = post(&gate, &reweight, Some(&referer)).await;
    assert!(
        member_row(&after, &url_a).contains("<td>3.00</td>"),
        "{after}"
    );
    assert_eq!(spread(&gate, 8).await, (6, 2));

    // The edit form for one member, reached with b=, w= and the nonce.
    let form = request(
        &gate,
        format!("GET /balancer-manager?b=pool&w={url_a}&nonce={n} HTTP/1.1\r\nHost: proxy.test\r\nReferer: {referer}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(
        form.contains(&format!("<h3>Edit worker settings for {url_a}</h3>")),
        "{form}"
    );
    assert!(
        form.contains(&format!(
            "<input type=hidden name='nonce' id='nonce' value='{n}'>"
        )),
        "{form}"
    );

    // A reload: the configured state again, and a new nonce.
    gate.reload(&format!("{LISTEN}\nServerName proxy.test\n{body}"))
        .await;
    let reloaded = page(&gate).await;
    assert!(
        member_row(&reloaded, &url_a).contains("<td>1.00</td>"),
        "{reloaded}"
    );
    assert_ne!(nonce(&reloaded), n);
    let (x, y) = spread(&gate, 4).await;
    assert_eq!(x + y, 4);
    assert!(x == 2 && y == 2, "equal weights alternate: {x} {y}");
    // wsgate holds pooled backend connections until it stops.
    drop(gate);
    a.finish().await;
    b.finish().await;
}
