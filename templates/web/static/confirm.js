// One clear step: the confirmation is sent as soon as a person's browser shows the page.
// Without script the same button is there to press.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("confirm");
  if (form) {
    form.submit();
  }
});
