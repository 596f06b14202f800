/* placeholder: being written */ typedef int otk_placeholder_;
