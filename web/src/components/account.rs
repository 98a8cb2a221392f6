//! Who is signed in, and the way out.

use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct AccountProps {
    pub user: AttrValue,
    pub on_sign_out: Callback<()>,
}

#[component]
pub fn Account(props: &AccountProps) -> Html {
    let onclick = props.on_sign_out.reform(|_: MouseEvent| ());
    html! {
        <div class="account">
            <span class="account-user" title={format!("Signed in as {}", props.user)}>
                <span class="sr-only">{ "Signed in as " }</span>
                { props.user.clone() }
            </span>
            <button id="logout" type="button" class="sign-out" {onclick}>{ "Sign out" }</button>
        </div>
    }
}
