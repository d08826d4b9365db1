// libxcrypt (Debian: libcrypt-dev): crypt_r and crypt_gensalt_rn do the bcrypt work for the Auth target.
#include <crypt.h>
