//! MI commands of dialog.
