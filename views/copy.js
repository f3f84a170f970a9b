// Copy buttons: hidden until this script runs, so without JavaScript only the download links show.
for (const button of document.querySelectorAll('button[data-copy]')) {
  const label = button.textContent;
  const status = document.getElementById('copy-status');
  button.hidden = false;
  button.addEventListener('click', async () => {
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    let message = 'Copied to the clipboard.';
    try {
      await navigator.clipboard.writeText(source.textContent);
      button.textContent = 'Copied';
    } catch {
      // The kubeconfig page is sandboxed (an opaque origin has no clipboard permission): copy the
      // selection during the click instead, and say so when even that is refused.
      const range = document.createRange();
      range.selectNodeContents(source);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      if (document.execCommand('copy')) {
        getSelection().removeAllRanges();
        button.textContent = 'Copied';
      } else {
        message = 'Selected: press Ctrl+C (⌘C on a Mac) to copy.';
        button.textContent = 'Selected';
      }
    }
    if (status) status.textContent = message;
    setTimeout(() => {
      button.textContent = label;
    }, 2000);
  });
}
